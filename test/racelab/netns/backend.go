package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dnsguard/dnsguard/test/internal/harness"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// backend is the race lab in network namespaces:
//
//	pod ns ──veth── node ns (router: DNAT Service IP:53 → random endpoint,
//	                         the lab's insert_failed emulation)
//	                  ├─veth── dns1 ns (dnsmasq, test zone)
//	                  └─veth── dns2 ns (dnsmasq, test zone)
type backend struct {
	root, bin, work, logs string
	t                     topo
	cpu                   int
	clients               lab.Binaries
	procs                 []*harness.Proc
	hold                  time.Duration
}

func (b *backend) Name() string { return "netns" }

// Modes: what each configuration's resolv.conf comes from (webhook /explain)
// and which clients run in it.
func (b *backend) Modes() []lab.Mode {
	all := []string{"glibc-gai", "glibc-gai-loop", "glibc-getent", "musl-gai"}
	return []lab.Mode{
		{Name: "off", Label: "a ClusterFirst (mode off)", Clients: all, How: "webhook `/explain` for `dnsguard.io/mode: off`"},
		{Name: "dnsconfig", Label: "b dnsconfig", Clients: all, How: "webhook `/explain` for `dnsguard.io/mode: dnsconfig`"},
		{Name: "sidecar", Label: "c sidecar", Clients: all, How: "webhook `/explain` for `dnsguard.io/mode: sidecar`; `bin/resolver` on 127.0.0.1:53 in the pod"},
		{Name: "sidecar-nofallback", Label: "c′ sidecar, fallback off", Clients: []string{"glibc-gai", "musl-gai"}, How: "webhook started with `--sidecar-fallback=false`, mode sidecar"},
		{Name: "sidecar-control", Label: "c✗ sidecar, upstream blackholed (negative control)", Clients: []string{"glibc-gai", "musl-gai"}, How: "webhook `/explain` for `dnsguard.io/mode: sidecar`; `bin/resolver` on 127.0.0.1:53 in the pod with `--upstream=" + blackhole + ":53`, every packet from the pod to " + blackhole + " dropped by the lab's table: the sidecar never gets an answer to forward"},
		{Name: "nodelocal", Label: "d node-local", Clients: all, How: "webhook started with `--node-local-address=169.254.20.10`, mode dnsconfig; `bin/resolver --node-local` in the node namespace"},
	}
}

// webhook port and annotation each mode's resolv.conf comes from: the
// defaults (8443), --sidecar-fallback=false (8444, the row that shows what
// the fallback nameserver costs musl), --node-local-address (8445).
var explainFrom = map[string]struct{ port, mode string }{
	"off": {"8443", "off"}, "dnsconfig": {"8443", "dnsconfig"}, "sidecar": {"8443", "sidecar"},
	"sidecar-nofallback": {"8444", "sidecar"}, "sidecar-control": {"8443", "sidecar"}, "nodelocal": {"8445", "dnsconfig"},
}

// blackhole is the sidecar control's upstream: an address of TEST-NET-1
// (RFC 5737) that the lab's table drops, so it never answers. The control
// row c✗ (as in the cluster lab) shows that the lab tells a sidecar that
// cannot answer from one that does: its rows must stall.
const blackhole = "192.0.2.53"

// The negative control's rows are short: each glibc lookup waits timeout:2
// for the silent sidecar (8 lookups: 16 s); musl's cost a millisecond unless
// the emulation dropped one of the fallback's pair, which a row of 24 makes
// certain (the netns lab collides on nearly every lookup).
const (
	controlN     = 8
	controlMuslN = 24
)

// pin runs a command on the lab's CPU with SCHED_FIFO priority prio.
//
// In a cluster the DNS pod is usually on another node: the A's answer needs
// 0.1-1 ms to come back, far longer than the microseconds between the A and
// the AAAA leaving the client, so the AAAA always travels while the A is
// unanswered. On one machine with veth the answer can beat the AAAA (and
// this kernel has no netem to add delay). So the clients run SCHED_FIFO
// (10) and the dnsmasq servers on the same CPU at a lower priority (5):
// dnsmasq gets the CPU only once the client sleeps waiting for answers,
// i.e. after both queries left — the ordering of a real network, on every
// lookup. The servers (dnsmasq, the sidecar, the node cache) run SCHED_FIFO
// too, below the clients: they never preempt a client, and the rest of a
// busy CI machine cannot delay them either, so the clean rows measure
// dnsguard, not the machine's load.
func (b *backend) pin(prio string) []string {
	return []string{"taskset", "-c", strconv.Itoa(b.cpu), "chrt", "-f", prio}
}

func (b *backend) Setup(ctx context.Context, l *lab.Lab) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("CPU affinity: %w", err)
	}
	for b.cpu = 0; b.cpu < 1024 && !set.IsSet(b.cpu); b.cpu++ {
	}
	removeLeftovers(ctx, l.Log)
	l.Log("run %s: creating namespaces %s (work dir %s, logs %s)", b.t.id, strings.Join(b.t.all(), " "), b.work, b.logs)
	if err := b.t.create(ctx, b.work); err != nil {
		return err
	}
	for _, s := range []struct{ ns, ip string }{{b.t.dns1, ep1}, {b.t.dns2, ep2}} {
		p, err := b.startDNSMasq(s.ns, s.ip)
		if err != nil {
			return err
		}
		b.procs = append(b.procs, p)
		if err := waitFor(ctx, p, "dnsmasq answers", func() bool { return b.dig(ctx, s.ip, fqdn, "A") != "" }); err != nil {
			return err
		}
	}
	a, aaaa := b.dig(ctx, svcIP, fqdn, "A"), b.dig(ctx, svcIP, fqdn, "AAAA")
	l.Check(a == addr4 && aaaa == addr6, "topology: pod → Service IP %s → DNAT → dnsmasq answers A %q and AAAA %q (want %s / %s)", svcIP, a, aaaa, addr4, addr6)
	// Both endpoints must be used (random DNAT), as with a 2-replica CoreDNS.
	for i := 0; i < 20; i++ {
		b.dig(ctx, svcIP, fqdn, "A")
	}
	spread, err := lab.Spread(ctx, l.Node, svcIP, []string{ep1, ep2})
	if err != nil {
		l.Fail("topology: conntrack -L: %v", err)
	} else {
		l.Check(spread[ep1] > 0 && spread[ep2] > 0, "topology: random DNAT spreads flows over both endpoints (%d / %d conntrack entries)", spread[ep1], spread[ep2])
	}

	l.Log("building gailoop with gcc (glibc) and musl-gcc -static (musl)")
	if b.clients, err = lab.BuildClients(ctx, filepath.Join(b.root, "test", "racelab", "gailoop.c"), b.work); err != nil {
		return err
	}
	ldd := exec.CommandContext(ctx, "ldd", b.clients.Musl).Run()
	glibc, _ := exec.CommandContext(ctx, "ldd", "--version").Output()
	ver := strings.Fields(strings.SplitN(string(glibc), "\n", 2)[0])
	l.Check(ldd != nil && len(ver) > 0, "clients built: gai-glibc (gcc, glibc %s), gai-musl (musl-gcc -static, not dynamically linked)", ver[len(ver)-1])

	return b.configurations(ctx, l)
}

// configurations start the webhooks and read each mode's resolv.conf from
// /explain: the lab measures the project's own rendering.
func (b *backend) configurations(ctx context.Context, l *lab.Lab) error {
	if _, err := run(ctx, filepath.Join(b.bin, "certs"), "controller", "--once", "--out-dir="+filepath.Join(b.work, "certs"), "--hosts=127.0.0.1,localhost", "--log-level=warn"); err != nil {
		return err
	}
	l.Log("starting bin/webhook (certificates from certs controller --once) in %s", b.t.node)
	for _, w := range []struct {
		port  string
		extra []string
	}{{"8443", nil}, {"8444", []string{"--sidecar-fallback=false"}}, {"8445", []string{"--node-local-address=" + nodeLocalIP}}} {
		p, err := b.startWebhook(ctx, w.port, w.extra...)
		if p != nil {
			b.procs = append(b.procs, p)
		}
		if err != nil {
			return err
		}
	}
	for _, m := range b.Modes() {
		e := explainFrom[m.Name]
		text, err := b.explain(ctx, e.port, e.mode)
		if err != nil {
			return err
		}
		l.Resolv[m.Name] = text
		l.Log("resolv.conf for mode %s (from /explain):\n%s", m.Name, text)
	}
	// The lab is only meaningful if /explain gave what the modes promise.
	svc := regexp.QuoteMeta(svcIP)
	for _, c := range []struct {
		mode, what string
		want       []string
	}{
		{"off", "ClusterFirst rendering: Service IP, cluster search path, ndots:5",
			[]string{`^nameserver ` + svc + `$`, `^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local$`, `^options ndots:5$`}},
		{"dnsconfig", "timeout:2 attempts:3 single-request-reopen",
			[]string{`^nameserver ` + svc + `$`, `^options .*ndots:5.*timeout:2.*attempts:3.*single-request-reopen`}},
		{"sidecar", "127.0.0.1 first, Service IP as fallback",
			[]string{`^nameserver 127\.0\.0\.1$`, `^nameserver ` + svc + `$`, `^search default\.svc\.cluster\.local `}},
		{"nodelocal", "node cache first, Service IP as fallback",
			[]string{`^nameserver ` + regexp.QuoteMeta(nodeLocalIP) + `$`, `^nameserver ` + svc + `$`, `^options .*timeout:2.*attempts:3`}},
	} {
		missing := ""
		for _, p := range c.want {
			if !regexp.MustCompile(`(?m)` + p).MatchString(l.Resolv[c.mode]) {
				missing = p
				break
			}
		}
		l.Check(missing == "", "/explain %s: %s%s", c.mode, c.what, map[bool]string{true: "", false: " (no line matching '" + missing + "')"}[missing == ""])
	}
	l.Check(!regexp.MustCompile(`(?m)^nameserver `+svc).MatchString(l.Resolv["sidecar-nofallback"]),
		"/explain sidecar with --sidecar-fallback=false: 127.0.0.1 only (no %s)", svcIP)
	return nil
}

// Probe: the real race, no emulation: glibc and musl in one process each
// with the ClusterFirst resolv.conf.
func (b *backend) Probe(ctx context.Context, l *lab.Lab, n int) map[string][]lab.Lookup {
	l.Log("real-race probe: %d glibc and %d musl lookups (in-process loop) with the ClusterFirst resolv.conf, no emulation", n, n)
	if err := b.t.setResolv(l.Resolv["off"]); err != nil {
		l.Fail("real-race probe: %v", err)
		return nil
	}
	got := map[string][]lab.Lookup{}
	for libc, bin := range map[string]string{"glibc": b.clients.Glibc, "musl": b.clients.Musl} {
		out, _ := run(ctx, in(b.t.pod, "timeout", "120", bin, "-n", strconv.Itoa(n), "-t", "100", lookupName)...)
		got[libc], _ = lab.ParseLookups(out)
	}
	return got
}

// RunModes runs each configuration on its own: this lab has one pod
// namespace, whose resolv.conf and resolver are the configuration's (its
// modes have no Group).
func (b *backend) RunModes(ctx context.Context, l *lab.Lab, runs []lab.ModeRun) []lab.Row {
	var rows []lab.Row
	for _, r := range runs {
		rows = append(rows, b.runMode(ctx, l, r.Mode, r.Clients)...)
	}
	return rows
}

func (b *backend) runMode(ctx context.Context, l *lab.Lab, m lab.Mode, clients []lab.Client) []lab.Row {
	if err := b.t.setResolv(l.Resolv[m.Name]); err != nil {
		l.Fail("%s: %v", m.Name, err)
		return nil
	}
	var server *harness.Proc
	var err error
	control := m.Name == "sidecar-control"
	switch m.Name {
	case "sidecar", "sidecar-nofallback":
		server, err = b.startSidecar(ctx, m.Name, svcIP+":53")
	case "sidecar-control":
		server, err = b.startSidecar(ctx, m.Name, blackhole+":53")
	case "nodelocal":
		server, err = b.startNodeCache(ctx, m.Name)
	}
	if err != nil {
		stop(server)
		l.Fail("%s rows not run: %v", m.Label, err)
		return nil
	}
	var rows []lab.Row
	lookups := 0
	for _, c := range clients {
		n := l.Opts.N
		if control && c.Libc == "musl" {
			n = min(n, controlMuslN)
		} else if control {
			n = min(n, controlN)
		}
		r := b.row(ctx, l, m, c, n)
		rows = append(rows, r)
		lookups += len(r.Lookups)
	}
	if server == nil {
		return rows
	}
	b.checkCounters(ctx, l, m, lookups, control)
	stop(server)
	if m.Name == "nodelocal" {
		_, err := run(ctx, in(b.t.node, "ip", "link", "show", "dnsguard0")...)
		l.Check(err != nil, "node cache removed dnsguard0 and its NOTRACK table on SIGTERM")
	} else if pids, _ := run(ctx, "ip", "netns", "pids", b.t.pod); strings.TrimSpace(pids) != "" {
		// A leftover would answer instead in the next row.
		l.Fail("processes left in %s after stopping the resolver: %s", b.t.pod, strings.Join(strings.Fields(pids), " "))
	}
	return rows
}

// checkCounters: TTL 0 and no cache hits — every lookup must have crossed
// the node (and the emulation), A and AAAA alike: the rows are clean
// because of how the resolver talks upstream, not because it answered from
// memory or left a type out. A control's counters are reported only (its
// upstream never answers; its assertion is its stalls).
//
// This lab keeps one fixed name with TTL 0 rather than a name per lookup
// (the cluster lab's): a resolver that cached what it must not (a TTL 0
// answer kept, a wrong TTL) shows here as cache hits, where a name per
// lookup would never be asked twice.
//
// Negative control (issue 19, make race-lab with a throwaway resolver): a
// node cache that answered every AAAA NODATA itself (and slept 600 ms
// before each forward) sent 301 queries upstream for 400 lookups and failed
// here; its rows failed the answers check (glibc 0 of 100 right, musl 20)
// and glibc's the 500 ms bound (max 607–649 ms).
func (b *backend) checkCounters(ctx context.Context, l *lab.Lab, m lab.Mode, lookups int, control bool) {
	metrics := in(b.t.pod, "curl", "-sf", "http://127.0.0.1:8053/metrics")
	if m.Name == "nodelocal" {
		metrics = in(b.t.node, "curl", "-sf", "http://"+nodeHealth+"/metrics")
	}
	scope := fmt.Sprintf("%s: bin/resolver's own counters over the rows", m.Label)
	out, err := run(ctx, metrics...)
	if err != nil {
		l.Fail("%s: %v", scope, err)
		return
	}
	got, err := lab.ParseResolverCounters(out)
	if err != nil {
		l.Fail("%s: %v", scope, err)
		return
	}
	ch := lab.CheckForwarded(scope, got, lookups)
	l.Counters = append(l.Counters, ch.Text)
	if control {
		l.Log("%s", ch.Text)
		return
	}
	l.Check(ch.OK, "%s", ch.Text)
}

// row runs n lookups of one client in the pod with a fresh emulation table
// (and, for the node cache, the emulation on its own queries upstream; for
// the control, the rule that blackholes the sidecar's upstream).
func (b *backend) row(ctx context.Context, l *lab.Lab, m lab.Mode, c lab.Client, n int) lab.Row {
	r := lab.Row{Mode: m.Name, Label: m.Label, Client: c.Name, Asked: n}
	if err := l.Emulation.Reset(ctx); err != nil {
		l.Fail("row %s × %s: %v", m.Name, c.Name, err)
		return r
	}
	if err := l.Emulation.AddClient(ctx, 0, podIP); err != nil {
		l.Fail("row %s × %s: %v", m.Name, c.Name, err)
		return r
	}
	switch m.Name {
	case "nodelocal":
		// The node cache's own queries cross the same emulation, so "0
		// collisions" is earned. Here they go to the cluster DNS over TCP
		// (the lab's name is in the cluster domain), which cannot collide:
		// the check guards against a cache that switched to UDP; the
		// cluster lab, whose names go to the node's resolver over UDP, is
		// where a cache sending a pair from one socket was caught.
		if err := l.Emulation.AddHost(ctx, []string{svcIP}); err != nil {
			l.Fail("row %s × %s: %v", m.Name, c.Name, err)
			return r
		}
	case "sidecar-control":
		// The sidecar's upstream is routed through the node; dropped there,
		// silently, it never answers.
		if err := l.Emulation.Block(ctx, 0, podIP, blackhole); err != nil {
			l.Fail("row %s × %s: %v", m.Name, c.Name, err)
			return r
		}
	}
	l.Log("row %s × %s: %d lookups of %q", m.Label, c.Name, n, lookupName)
	t0 := time.Now()
	// timeout --foreground keeps the client in our process group, so a
	// terminal's Ctrl-C reaches it too; the context ends it on SIGTERM.
	argv := in(b.t.pod, append(append([]string{"timeout", "--foreground", strconv.Itoa(lab.RowLimit(l.Opts.N) + 10)}, b.pin("10")...), b.clients.Argv(c, n, lookupName)...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		l.Fail("row %s/%s: client exited nonzero: %v: %s", m.Name, c.Name, err, strings.TrimSpace(errb.String()))
	}
	var other []string
	r.Lookups, other = lab.ParseLookups(out.String())
	if len(other) > 0 {
		l.Fail("row %s/%s: client printed lines that are no lookups: %q", m.Name, c.Name, other)
	}
	var err error
	if r.Collisions, r.Drops, err = l.Emulation.Counters(ctx, 0); err != nil {
		l.Fail("row %s × %s: %v", m.Name, c.Name, err)
	}
	switch m.Name {
	case "nodelocal":
		coll, drops, err := l.Emulation.HostCounters(ctx)
		if err != nil {
			l.Fail("row %s × %s: %v", m.Name, c.Name, err)
		} else {
			text := fmt.Sprintf("%s × %s: the node cache's own queries to %s (output hook) had %d colliding packets, %d dropped by the emulation", m.Label, c.Name, svcIP, coll, drops)
			l.Counters = append(l.Counters, text)
			l.Check(coll == 0, "%s (want 0: one socket per query)", text)
		}
	case "sidecar-control":
		if r.Blocked, err = l.Emulation.Blocked(ctx, 0); err != nil {
			l.Fail("row %s × %s: %v", m.Name, c.Name, err)
		}
	}
	l.RuleListing(ctx)
	l.WriteRow(r, out.String())
	l.Log("  done in %.0f s; collisions %d, drops %d", time.Since(t0).Seconds(), r.Collisions, r.Drops)
	return r
}

// Close stops the servers and removes the namespaces; it proves nothing of
// the run remains.
func (b *backend) Close(ctx context.Context) error {
	if b.hold > 0 {
		fmt.Fprintf(os.Stderr, "race-lab: holding the topology for %s (RACE_HOLD): ip netns exec %s ...\n", b.hold, b.t.pod)
		time.Sleep(b.hold)
	}
	for _, p := range b.procs {
		stop(p)
	}
	err := b.t.destroy(ctx)
	if rerr := os.RemoveAll(b.work); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
