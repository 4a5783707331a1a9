// Command netns is the race lab's network-namespace backend (make
// race-lab, as root): it reproduces the Kubernetes "5-second DNS stall" with
// real glibc and real musl against an emulated conntrack insert_failed, and
// measures each dnsguard configuration against it. The lab itself (the
// emulation, the conntrack reading, the clients, the report) is
// test/racelab/lab, shared with the real-node backend in test/e2e.
//
// Knobs (environment): RACE_N lookups per row (100), RACE_EVERY drop every
// RACE_EVERY-th colliding packet (10), RACE_PROBE_N lookups per libc of the
// real-race probe (300), RACE_MODES and RACE_CLIENTS subsets (comma or space
// separated; comparisons needing a left-out row are listed as SKIP),
// RACE_OUT the run directory (.cache/race-lab/netns), RACE_DOCS=1 also
// rewrites docs/race-lab.{md,svg} (make race-lab-docs), RACE_HOLD=SECONDS
// keeps the topology that long before cleanup (debugging).
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runLab(ctx)
	stop()
	os.Exit(code)
}

func logf(format string, args ...any) { fmt.Printf("race-lab: "+format+"\n", args...) }

func runLab(ctx context.Context) int {
	t0 := time.Now()
	root, err := repoRoot()
	if err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	b := &backend{root: root, bin: filepath.Join(root, "bin"), t: newTopo()}
	o, err := lab.FromEnv(b.Modes(), 300, filepath.Join(root, ".cache", "race-lab", "netns"), "make race-lab")
	if err == nil {
		err = preflight(b.bin)
	}
	if err == nil && os.Getenv("RACE_HOLD") != "" {
		var s int
		if s, err = strconv.Atoi(os.Getenv("RACE_HOLD")); err == nil {
			b.hold = time.Duration(s) * time.Second
		}
	}
	if err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	if o.Docs {
		o.Command = "RACE_DOCS=1 make race-lab (make race-lab-docs)"
	}
	// A fresh run directory: nothing of an earlier run may be read as this one's.
	if err := os.RemoveAll(o.Out); err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	b.logs = filepath.Join(o.Out, "logs")
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	if b.work, err = os.MkdirTemp("", "dg-racelab."); err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	dnsmasq := "?"
	if out, err := exec.Command("dnsmasq", "--version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 2 {
			dnsmasq = f[2] // "Dnsmasq version 2.90 ..."
		}
	}
	l := &lab.Lab{
		Opts:    o,
		Node:    lab.Node{Prefix: []string{"ip", "netns", "exec", b.t.node}},
		Log:     logf,
		Name:    lookupName,
		Addrs:   []string{addr4, addr6},
		Machine: lab.Machine(ctx, "dnsmasq "+dnsmasq),
		Resolv:  map[string]string{},
	}
	l.Emulation = &lab.Emulation{Node: l.Node, Table: "dgracelab", Service: svcIP, Every: o.Every}
	res, err := lab.Run(ctx, b, l, root)
	if cerr := b.Close(context.WithoutCancel(ctx)); cerr != nil {
		logf("cleanup: %v", cerr)
		err = fmt.Errorf("%v; cleanup: %w", err, cerr)
	}
	if err != nil {
		logf("FATAL: %v", err)
		return 1
	}
	passed, failed, skipped := res.Counts()
	logf("lab ran %.0f s; report in %s", time.Since(t0).Seconds(), o.Out)
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return 1
	}
	return 0
}

// repoRoot is the repository this binary runs in (make runs it from there).
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(wd, "test", "racelab", "gailoop.c")); err != nil {
		return "", fmt.Errorf("run from the repository root (make race-lab): %w", err)
	}
	return wd, nil
}

// preflight: root, the tools and the binaries the lab runs.
func preflight(bin string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, nftables)")
	}
	for _, t := range []string{"ip", "nft", "dnsmasq", "conntrack", "gcc", "musl-gcc", "getent", "dig", "curl", "timeout", "taskset", "chrt"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("missing tool %s (run make deps)", t)
		}
	}
	for _, b := range []string{"webhook", "resolver", "certs"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s (run make build)", filepath.Join(bin, b))
		}
	}
	if err := exec.Command("chrt", "-f", "10", "true").Run(); err != nil {
		return fmt.Errorf("cannot use SCHED_FIFO (needed for the CPU placement): %w", err)
	}
	return nil
}
