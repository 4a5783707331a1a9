package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses of the topology (only routed inside the lab's namespaces).
const (
	svcIP       = "10.251.0.10"   // the fake cluster DNS Service IP
	nodeLocalIP = "169.254.20.10" // the node cache (row d)
	ep1         = "10.250.2.2"    // DNS endpoint 1 (dnsmasq in dns1)
	ep2         = "10.250.3.2"    // DNS endpoint 2 (dnsmasq in dns2)
	podIP       = "10.250.1.2"
	lookupName  = "backend" // looked up by the clients; see docs/race-lab.md
	fqdn        = "backend.default.svc.cluster.local"
	addr4       = "10.252.0.5"
	addr6       = "fd00:252::5"
	// owners maps a run id to "pid workdir" of the lab run owning
	// dg-<id>-*, so a later run can tell leftovers from a live parallel run.
	owners = "/run/dg-racelab"
)

var nsRE = regexp.MustCompile(`^dg-([0-9a-f]+)-(pod|node|dns1|dns2)$`)

// topo is one run's namespaces dg-<id>-{pod,node,dns1,dns2}. Every
// namespace, rule and process lives inside them; nothing is changed in the
// root namespace except /etc/netns/<pod>/resolv.conf, which `ip netns exec`
// bind-mounts over /etc/resolv.conf for processes in the pod.
type topo struct {
	id                    string
	pod, node, dns1, dns2 string
}

func newTopo() topo {
	id := fmt.Sprintf("%04x%02x", os.Getpid()&0xffff, rand.IntN(256))
	p := "dg-" + id + "-"
	return topo{id: id, pod: p + "pod", node: p + "node", dns1: p + "dns1", dns2: p + "dns2"}
}

func (t topo) all() []string { return []string{t.pod, t.node, t.dns1, t.dns2} }

// run runs argv and wraps its stderr into the error.
func run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// in prefixes argv with ip netns exec ns.
func in(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// netnsList is `ip netns list`'s names.
func netnsList(ctx context.Context) []string {
	out, _ := run(ctx, "ip", "netns", "list")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// nukeID removes every namespace of run id, the processes in them (by pid,
// from ip netns pids: nothing outside the lab's namespaces is touched) and
// its /etc/netns files and owner record.
func nukeID(ctx context.Context, id string, removeWork bool) {
	for _, ns := range netnsList(ctx) {
		if m := nsRE.FindStringSubmatch(ns); m == nil || m[1] != id {
			continue
		}
		out, _ := run(ctx, "ip", "netns", "pids", ns)
		var pids []int
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if len(pids) > 0 {
			time.Sleep(200 * time.Millisecond)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_, _ = run(ctx, "ip", "netns", "del", ns)
	}
	if removeWork {
		if b, err := os.ReadFile(filepath.Join(owners, id)); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 && strings.HasPrefix(f[1], "/tmp/dg-racelab.") {
				_ = os.RemoveAll(f[1])
			}
		}
	}
	_ = os.RemoveAll("/etc/netns/dg-" + id + "-pod")
	_ = os.Remove(filepath.Join(owners, id))
}

// removeLeftovers removes the namespaces of runs whose owner process is
// gone (killed with SIGKILL, machine crash); live parallel runs keep theirs.
func removeLeftovers(ctx context.Context, log func(string, ...any)) {
	seen := map[string]bool{}
	for _, ns := range netnsList(ctx) {
		m := nsRE.FindStringSubmatch(ns)
		if m == nil || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		b, _ := os.ReadFile(filepath.Join(owners, m[1]))
		f := strings.Fields(string(b))
		if len(f) > 0 {
			if pid, err := strconv.Atoi(f[0]); err == nil && syscall.Kill(pid, 0) == nil {
				continue
			}
		}
		log("removing leftover namespaces of run %s", m[1])
		nukeID(ctx, m[1], true)
	}
}

// create builds the namespaces, veth pairs, addresses and routes, and
// kube-proxy's DNAT of the Service IP to a random endpoint.
func (t topo) create(ctx context.Context, work string) error {
	if err := os.MkdirAll(owners, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(owners, t.id), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), work)), 0o644); err != nil {
		return err
	}
	var steps [][]string
	for _, ns := range t.all() {
		steps = append(steps, []string{"ip", "netns", "add", ns}, []string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	// veth pairs are created inside the namespaces, so their names never
	// meet the root namespace or another run.
	steps = append(steps,
		[]string{"ip", "link", "add", "eth0", "netns", t.pod, "type", "veth", "peer", "name", "vpod", "netns", t.node},
		[]string{"ip", "link", "add", "eth0", "netns", t.dns1, "type", "veth", "peer", "name", "vdns1", "netns", t.node},
		[]string{"ip", "link", "add", "eth0", "netns", t.dns2, "type", "veth", "peer", "name", "vdns2", "netns", t.node},
		[]string{"ip", "-n", t.pod, "addr", "add", podIP + "/24", "dev", "eth0"},
		// An IPv6 ULA makes the pod dual-stack, so AI_ADDRCONFIG callers
		// (getent ahosts) ask for AAAA too, as in dual-stack clusters.
		[]string{"ip", "-n", t.pod, "-6", "addr", "add", "fd00:250:1::2/64", "dev", "eth0", "nodad"},
		[]string{"ip", "-n", t.pod, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", t.pod, "route", "add", "default", "via", "10.250.1.1"},
		[]string{"ip", "-n", t.pod, "-6", "route", "add", "default", "via", "fd00:250:1::1"},
		[]string{"ip", "-n", t.node, "addr", "add", "10.250.1.1/24", "dev", "vpod"},
		[]string{"ip", "-n", t.node, "-6", "addr", "add", "fd00:250:1::1/64", "dev", "vpod", "nodad"},
		[]string{"ip", "-n", t.node, "addr", "add", "10.250.2.1/24", "dev", "vdns1"},
		[]string{"ip", "-n", t.node, "addr", "add", "10.250.3.1/24", "dev", "vdns2"},
		[]string{"ip", "-n", t.node, "link", "set", "vpod", "up"},
		[]string{"ip", "-n", t.node, "link", "set", "vdns1", "up"},
		[]string{"ip", "-n", t.node, "link", "set", "vdns2", "up"},
		in(t.node, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
		[]string{"ip", "-n", t.dns1, "addr", "add", ep1 + "/24", "dev", "eth0"},
		[]string{"ip", "-n", t.dns1, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", t.dns1, "route", "add", "default", "via", "10.250.2.1"},
		[]string{"ip", "-n", t.dns2, "addr", "add", ep2 + "/24", "dev", "eth0"},
		[]string{"ip", "-n", t.dns2, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", t.dns2, "route", "add", "default", "via", "10.250.3.1"},
	)
	for _, s := range steps {
		if _, err := run(ctx, s...); err != nil {
			return err
		}
	}
	// kube-proxy's job: DNAT the Service IP to a random endpoint (its
	// nftables mode uses exactly this numgen random map; its iptables mode
	// -m statistic --mode random).
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", t.node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`table ip dgkube {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr %s meta l4proto { udp, tcp } th dport 53 dnat to numgen random mod 2 map { 0 : %s, 1 : %s }
  }
}
`, svcIP, ep1, ep2))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kube-proxy's DNAT: %w: %s", err, out)
	}
	return os.MkdirAll("/etc/netns/"+t.pod, 0o755)
}

// setResolv is the pod's resolv.conf for the next row.
func (t topo) setResolv(text string) error {
	return os.WriteFile("/etc/netns/"+t.pod+"/resolv.conf", []byte(text), 0o644)
}

// destroy removes the run and proves it: no namespace of it may remain.
func (t topo) destroy(ctx context.Context) error {
	nukeID(ctx, t.id, false)
	for _, ns := range netnsList(ctx) {
		if m := nsRE.FindStringSubmatch(ns); m != nil && m[1] == t.id {
			return fmt.Errorf("cleanup left namespace %s behind", ns)
		}
	}
	return nil
}
