// Package lab is the race lab, written once for its two backends: the
// network namespaces of `make race-lab` (test/racelab/netns) and the real
// node of `make race-lab-cluster` (test/e2e, TestRaceLab). It owns what they
// share: the emulated conntrack insert_failed (Emulation), the conntrack
// statistics (ConntrackStats, Spread), the clients (Clients, BuildClients),
// the run (Run: probe, rows, report) and the report (expectations per row,
// comparisons between rows, table, plot, markdown).
//
// A backend brings the topology: DNS endpoints behind a Service IP that is
// DNATed to them, client namespaces or pods with each configuration's
// resolv.conf, and the sidecar or node cache of the configurations that have
// one. Later rows (negative controls, other faults) are further Modes with
// their own expectations.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Backend is where the lab runs.
type Backend interface {
	// Name is "netns" or "cluster".
	Name() string
	// Modes is the catalogue of configurations in table order.
	Modes() []Mode
	// Setup builds the topology; an error means no row can run. Checks
	// along the way go to l.
	Setup(ctx context.Context, l *Lab) error
	// Probe does n lookups per libc in the Kubernetes default
	// configuration without emulation, per libc.
	Probe(ctx context.Context, l *Lab, n int) map[string][]Lookup
	// RunModes measures a group of configurations side by side (one, for
	// a mode without a Group), one row per client, with l.Emulation loaded
	// afresh for the group; failures go to l as checks.
	RunModes(ctx context.Context, l *Lab, runs []ModeRun) []Row
	// Close tears the topology down; it must leave nothing behind.
	Close(ctx context.Context) error
}

// ModeRun is one configuration of a group and the clients it runs.
type ModeRun struct {
	Mode    Mode
	Clients []Client
}

// Lab is one run: the options, the node, the emulation and what was
// checked and measured.
type Lab struct {
	Opts      Options
	Node      Node
	Emulation *Emulation
	// Log prints progress (stdout, or the test log).
	Log func(format string, args ...any)
	// Name is the name the clients look up.
	Name string
	// Addrs are the addresses every answered lookup must return (the
	// backend's zone: its A and its AAAA); empty skips the check.
	Addrs []string
	// NameHow says, on the page, who answers Name and how (measured by the
	// backend's setup).
	NameHow string
	// Resolv holds each mode's resolv.conf as the pods got it.
	Resolv map[string]string
	// Real lists what ran for real (the cluster page).
	Real []string
	// Counters lists what the resolvers' own counters showed, per row or
	// configuration (the cluster page).
	Counters []string
	// Machine describes the machine for the page.
	Machine string

	checks        []Check
	realRace      []string
	realRaceFired string
	rule          string
	start         time.Time
}

// Pass records a passed harness check.
func (l *Lab) Pass(format string, args ...any) {
	l.record(Check{OK: true, Text: fmt.Sprintf(format, args...)})
}

// Fail records a failed harness check. The report lists its first line; the
// log keeps all of it.
func (l *Lab) Fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	line, _, _ := strings.Cut(msg, "\n")
	if len(line) > 400 {
		line = line[:400] + "…"
	}
	if line != msg {
		l.Log("FAIL (details): %s", msg)
	}
	l.record(Check{Text: line})
}

// Check records ok as a passed or failed check.
func (l *Lab) Check(ok bool, format string, args ...any) {
	if ok {
		l.Pass(format, args...)
	} else {
		l.Fail(format, args...)
	}
}

func (l *Lab) record(c Check) {
	l.checks = append(l.checks, c)
	l.Log("%s: %s", c.Mark(), c.Text)
}

// Result is what a run measured and asserted.
type Result struct {
	Rows []Row
	// Checks are the harness's; RowChecks the per-row expectations and the
	// comparisons between rows.
	Checks, RowChecks []Check
	Table             string
}

// Failed counts failed checks of both kinds.
func (r *Result) Failed() int {
	n := 0
	for _, c := range append(slices.Clone(r.Checks), r.RowChecks...) {
		if !c.OK && !c.Skip {
			n++
		}
	}
	return n
}

// Counts is passed, failed, skipped over all checks.
func (r *Result) Counts() (passed, failed, skipped int) {
	for _, c := range append(slices.Clone(r.Checks), r.RowChecks...) {
		switch c.Mark() {
		case "PASS":
			passed++
		case "SKIP":
			skipped++
		default:
			failed++
		}
	}
	return passed, failed, skipped
}

// Run runs the lab on b: setup, the real-race probe, the emulated rows of
// every selected mode, the report into l.Opts.Out (and docs/ with
// l.Opts.Docs, under root). The error is for a run that could not measure
// at all; failed checks are in the result.
func Run(ctx context.Context, b Backend, l *Lab, root string) (*Result, error) {
	l.start = time.Now()
	if l.Resolv == nil {
		l.Resolv = map[string]string{}
	}
	if err := os.MkdirAll(l.Opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	setupErr := b.Setup(ctx, l)
	defer func() {
		// The emulation drops DNS packets: it must never outlive the run.
		if l.Emulation.Present(context.WithoutCancel(ctx)) {
			if err := l.Emulation.Remove(context.WithoutCancel(ctx)); err != nil {
				l.Fail("remove the emulation table %s: %v", l.Emulation.Table, err)
			}
		}
	}()
	if setupErr != nil {
		l.Fail("setup: %v", setupErr)
		return &Result{Checks: l.checks}, setupErr
	}
	l.probe(ctx, b)

	kernelBefore, err := ConntrackStats(ctx, l.Node)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, group := range l.groups(b.Modes()) {
		t0 := time.Now()
		got := b.RunModes(ctx, l, group)
		var labels []string
		for _, r := range group {
			labels = append(labels, r.Mode.Label)
		}
		l.Log("configuration %s: %d rows in %.1fs", strings.Join(labels, " + "), len(got), time.Since(t0).Seconds())
		rows = append(rows, got...)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if l.rule == "" {
		if l.rule, err = l.Emulation.Listing(ctx); err != nil {
			l.rule = l.Emulation.TableDef() + "# per client, added before it starts:\n" + l.Emulation.Rule(0, "<client IP>")
		}
	}
	if err := l.Emulation.Remove(ctx); err != nil {
		l.Fail("delete the emulation table %s: %v", l.Emulation.Table, err)
	}
	kernelAfter, err := ConntrackStats(ctx, l.Node)
	if err != nil {
		return nil, err
	}
	during := fmt.Sprintf("during the emulated rows the kernel's own insert_failed went %d → %d, drop %d → %d",
		kernelBefore["insert_failed"], kernelAfter["insert_failed"], kernelBefore["drop"], kernelAfter["drop"])
	if kernelBefore["insert_failed"] == kernelAfter["insert_failed"] {
		during += " (every drop in the table is the emulation's)"
	} else {
		during += " (the real race fired during the rows too)"
	}
	l.realRace = append(l.realRace, during)
	l.Log("%s", during)
	return l.report(b, rows, root)
}

// groups is the selected modes with their selected clients, in table
// order; the modes of one Group run together, where the first of them is.
func (l *Lab) groups(modes []Mode) [][]ModeRun {
	var out [][]ModeRun
	at := map[string]int{}
	for _, m := range modes {
		if !slices.Contains(l.Opts.Modes, m.Name) {
			continue
		}
		var clients []Client
		for _, name := range m.Clients {
			if c, ok := ClientNamed(name); ok && slices.Contains(l.Opts.Clients, name) {
				clients = append(clients, c)
			}
		}
		if len(clients) == 0 {
			continue
		}
		run := ModeRun{Mode: m, Clients: clients}
		if i, ok := at[m.Group]; ok && m.Group != "" {
			out[i] = append(out[i], run)
			continue
		}
		at[m.Group] = len(out)
		out = append(out, []ModeRun{run})
	}
	return out
}

// RuleListing lets a backend record the loaded table (with its per-client
// rules) for the page, while it still exists.
func (l *Lab) RuleListing(ctx context.Context) {
	if l.rule == "" {
		l.rule, _ = l.Emulation.Listing(ctx)
	}
}

// probe: the real race, no emulation, with the kernel's own counters
// around it.
func (l *Lab) probe(ctx context.Context, b Backend) {
	if l.Opts.ProbeN == 0 {
		l.realRaceFired = "not probed"
		return
	}
	before, err := ConntrackStats(ctx, l.Node)
	if err != nil {
		l.Fail("real-race probe: %v", err)
		return
	}
	got := b.Probe(ctx, l, l.Opts.ProbeN)
	after, err := ConntrackStats(ctx, l.Node)
	if err != nil {
		l.Fail("real-race probe: %v", err)
		return
	}
	done, slow := 0, 0
	for _, ls := range got {
		for _, x := range ls {
			done++
			if x.MS > 1000 {
				slow++
			}
		}
	}
	l.Check(done == 2*l.Opts.ProbeN, "real-race probe completed %d of %d lookups", done, 2*l.Opts.ProbeN)
	l.realRace = append(l.realRace, fmt.Sprintf("conntrack statistics of the node namespace over %d lookups (%d glibc + %d musl in one process each, the Kubernetes default configuration, no emulation): insert_failed %d → %d, clash_resolve %d → %d, drop %d → %d; lookups over 1 s: %d",
		done, l.Opts.ProbeN, l.Opts.ProbeN, before["insert_failed"], after["insert_failed"], before["clashres"], after["clashres"], before["drop"], after["drop"], slow))
	l.realRaceFired = "no"
	if after["insert_failed"] > before["insert_failed"] || slow > 0 {
		l.realRaceFired = "yes"
	}
	l.Log("real race fired: %s — %s", l.realRaceFired, l.realRace[0])
}

// WriteRow keeps a row's raw lookups in the run directory.
func (l *Lab) WriteRow(r Row, raw string) {
	p := filepath.Join(l.Opts.Out, "rows", r.Mode+"."+r.Client+".txt")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
		err = os.WriteFile(p, []byte(raw), 0o644)
		if err == nil {
			return
		}
	}
	l.Log("keep row %s × %s: could not write %s", r.Mode, r.Client, p)
}

var errNoRows = errors.New("no rows measured")
