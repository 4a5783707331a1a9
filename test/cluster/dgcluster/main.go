// Command dgcluster runs a real one- or two-node (--nodes) Kubernetes for dnsguard's e2e
// suite (package test/cluster) and tears it down whatever way the run ends.
//
//	dgcluster run [flags] -- CMD [ARGS...]   up, CMD inside the node namespace, down
//	dgcluster up [flags]                     up, then wait for Ctrl-C, then down
//	dgcluster cleanup                        clean up after a run that was killed
//
// CMD gets KUBECONFIG (admin), CLUSTER_RUN_DIR, CLUSTER_NETNS,
// CLUSTER_REGISTRY (the node's OCI registry, host:port),
// CLUSTER_CONTAINERD_SOCK, CLUSTER_PROXY_MODE (kube-proxy's mode,
// --proxy-mode=iptables|nftables), CLUSTER_DUAL_STACK (true with
// --dual-stack), CLUSTER_CONTROL (control.go: a socket to switch
// kube-proxy's mode), CLUSTER_NODES (the node names, comma-separated, the
// first node, where CMD runs, first) and CLUSTER_CONTAINERD_SOCKS (every
// node's containerd socket, in that order); its exit code becomes
// dgcluster's.
// A teardown that leaves anything behind (a process, a cgroup, a mount, a
// changed kernel setting, the node's network namespace with kube-proxy's
// rules) fails the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dnsguard/dnsguard/test/cluster"
)

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "dgcluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Printf("[cluster %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(args []string) (int, error) {
	if len(args) == 0 {
		return 2, errors.New("usage: dgcluster run|up|cleanup [flags] [-- CMD ...]")
	}
	fs := flag.NewFlagSet("dgcluster "+args[0], flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory with kube-apiserver, kubelet, containerd, ... (hack/build-tools.sh)")
	images := fs.String("images", "bin/images", "directory of the test image tarballs (*.tar) to import into containerd (dnsguard's own images come from the node's registry)")
	keep := fs.Bool("keep", false, "keep the run directory (logs, PKI, etcd data) after teardown")
	logDir := fs.String("log-dir", ".cache/e2e/cluster-logs", "where the component logs of the run are copied")
	stateDir := fs.String("state-dir", cluster.DefaultStateDir, "machine-wide lock and state of the running cluster")
	proxyMode := fs.String("proxy-mode", string(cluster.ProxyIPTables), "kube-proxy's mode: iptables or nftables")
	nodes := fs.Int("nodes", 1, "how many nodes: 1 or 2 (the second in a network namespace of its own, tainted "+cluster.Node2Taint+":NoSchedule)")
	dualStack := fs.Bool("dual-stack", false, "IPv4+IPv6 (IPv4 primary): Service and pod ranges, node addresses of both families")
	if err := fs.Parse(args[1:]); err != nil {
		return 2, err
	}
	// Before the lock and anything else: a mistyped mode fails at once.
	if err := cluster.ProxyMode(*proxyMode).Valid(); err != nil {
		return 2, fmt.Errorf("--proxy-mode: %w", err)
	}
	absBin, err := filepath.Abs(*bin)
	if err != nil {
		return 2, err
	}
	cfg := cluster.Config{Bin: absBin, Keep: *keep, LogDir: *logDir, StateDir: *stateDir, Log: logf, ProxyMode: cluster.ProxyMode(*proxyMode), Nodes: *nodes, DualStack: *dualStack}

	switch args[0] {
	case "cleanup":
		return 0, cluster.Cleanup(*stateDir, logf)
	case "run", "up":
	default:
		return 2, fmt.Errorf("unknown subcommand %q", args[0])
	}
	if cfg.Images, err = filepath.Glob(filepath.Join(*images, "*.tar")); err != nil {
		return 2, err
	}
	sort.Strings(cfg.Images)
	if len(cfg.Images) == 0 {
		return 2, fmt.Errorf("no image tarballs in %s (make test-images builds them)", *images)
	}

	// Ctrl-C or TERM: cancel whatever is running, then tear down. A second
	// signal during teardown is ignored so it cannot leave half a cluster.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := cluster.Up(ctx, cfg)
	if err != nil {
		return 1, err
	}
	var code int
	var runErr error
	control, stopControl, err := serveControl(c)
	if err != nil {
		code, runErr = 1, err
		args[0] = "" // straight to teardown
	}
	switch args[0] {
	case "run":
		cmd := fs.Args()
		if len(cmd) == 0 {
			runErr = errors.New("run: no command after --")
			code = 2
			break
		}
		env := []string{"CLUSTER_RUN_DIR=" + c.RunDir(), "CLUSTER_NETNS=" + c.Netns(), "CLUSTER_TIMINGS=" + timings(c),
			"CLUSTER_REGISTRY=" + c.Registry(), "CLUSTER_CONTAINERD_SOCK=" + c.ContainerdSock(),
			"CLUSTER_PROXY_MODE=" + string(c.ProxyMode()), "CLUSTER_CONTROL=" + control,
			"CLUSTER_DUAL_STACK=" + strconv.FormatBool(c.DualStack()),
			"CLUSTER_NODES=" + strings.Join(c.NodeNames(), ","),
			"CLUSTER_CONTAINERD_SOCKS=" + strings.Join(c.ContainerdSocks(), ",")}
		code, runErr = c.Exec(ctx, env, cmd...)
	case "up":
		logf("cluster is up (kube-proxy in %s mode, dual-stack %v): KUBECONFIG=%s; enter the node with: nsenter --net=%s -- bash; switch kube-proxy's mode with: curl --unix-socket %s -d nftables http://dgcluster/proxy-mode; Ctrl-C to tear down",
			c.ProxyMode(), c.DualStack(), c.AdminKubeconfig(), c.Netns(), control)
		<-ctx.Done()
	}
	if stopControl != nil {
		stopControl()
	}
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	t := time.Now()
	if err := c.Down(); err != nil {
		return 1, errors.Join(runErr, fmt.Errorf("teardown: %w", err))
	}
	logf("cluster down in %.1fs; nothing left behind (processes, cgroups, mounts, kernel settings, the node's network namespace checked)", time.Since(t).Seconds())
	if ctx.Err() != nil && code == 0 {
		return 130, errors.New("interrupted")
	}
	return code, runErr
}

func timings(c *cluster.Cluster) string {
	var parts []string
	for _, t := range c.Timings {
		parts = append(parts, fmt.Sprintf("%s=%.1fs", t.Step, t.Took.Seconds()))
	}
	return strings.Join(parts, ";")
}
