package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// page is what a markdown page is rendered from.
type page struct {
	opts          Options
	lab           *Lab
	modes         []Mode
	rows          []Row
	table         string
	checks        []Check // per-row expectations and comparisons
	svg           string  // file name of the plot next to the page
	commit        string
	seconds       int
	realRace      string
	realRaceFired string
}

// report asserts the rows, prints the table and the checks, and writes the
// page and plot into the run directory (and under docs/ with Opts.Docs).
func (l *Lab) report(b Backend, rows []Row, root string) (*Result, error) {
	res := &Result{Rows: rows, Table: renderTable(rows)}
	fmt.Print(res.Table)
	for _, r := range rows {
		want := l.Opts.N
		if r.Asked > 0 {
			want = r.Asked
		}
		res.RowChecks = append(res.RowChecks, checkRow(r, want, b.Name())...)
		if len(l.Addrs) > 0 {
			res.RowChecks = append(res.RowChecks, CheckAnswers(r.Label+" × "+r.Client, r.Lookups, l.Addrs))
		}
	}
	res.RowChecks = append(res.RowChecks, compareRows(rows, b.Modes(), l.Opts)...)
	for _, c := range res.RowChecks {
		fmt.Printf("%s: %s\n", c.Mark(), c.Text)
	}
	if len(rows) == 0 {
		l.Fail("%v", errNoRows)
	}
	res.Checks = l.checks
	p := page{opts: l.Opts, lab: l, modes: b.Modes(), rows: rows, table: res.Table, checks: res.RowChecks,
		commit: Commit(root), seconds: int(time.Since(l.start).Seconds()),
		realRace: strings.Join(l.realRace, "; "), realRaceFired: l.realRaceFired}
	base := "race-lab"
	if b.Name() == "cluster" {
		base = "race-lab-cluster"
	}
	title := fmt.Sprintf("dnsguard race lab: %d lookups of %q per row, 1 in %d colliding packets dropped (emulated insert_failed)", l.Opts.N, l.Name, l.Opts.Every)
	if b.Name() == "cluster" {
		title = fmt.Sprintf("dnsguard race lab on a real node (kubelet, kube-proxy, CoreDNS): %d lookups of %q per row, 1 in %d colliding packets dropped", l.Opts.N, l.Name, l.Opts.Every)
	}
	svg := renderSVG(rows, title)
	dirs := []string{l.Opts.Out}
	if l.Opts.Docs {
		dirs = append(dirs, filepath.Join(root, "docs"))
	}
	for _, dir := range dirs {
		p.svg = base + ".svg"
		md := renderNetnsMarkdown(p)
		if b.Name() == "cluster" {
			md = renderClusterMarkdown(p)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".svg"), []byte(svg), 0o644); err != nil {
			return res, fmt.Errorf("write plot: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".md"), []byte(md), 0o644); err != nil {
			return res, fmt.Errorf("write page: %w", err)
		}
		l.Log("wrote %s and %s", filepath.Join(dir, base+".md"), filepath.Join(dir, base+".svg"))
	}
	if !l.Opts.Docs {
		l.Log("docs/%s.md not touched (make race-lab-docs, or RACE_DOCS=1, rewrites it)", base)
	}
	return res, nil
}

// Commit names the checkout a page measured: `git rev-parse --short HEAD`,
// and "+dirty" when tracked files other than docs/ differ from it (the race
// lab's and fault matrix's pages; hack/lib.sh commit_stamp is the same rule
// for the bash-made pages).
func Commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	// The pages under docs/ are no part of what is measured: make
	// race-lab-docs runs the netns lab first, whose page would otherwise
	// mark the cluster lab's run dirty.
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "+dirty"
	}
	return c
}

// Machine describes this machine: kernel, CPUs and the C libraries'
// package versions, plus extra (e.g. dnsmasq's version).
func Machine(ctx context.Context, extra string) string {
	uname, _ := exec.CommandContext(ctx, "uname", "-srm").Output()
	ver := func(pkg string) string {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
		if err != nil {
			return "?"
		}
		return string(out)
	}
	m := fmt.Sprintf("%s, %d CPUs, glibc %s, musl %s", strings.TrimSpace(string(uname)), runtime.NumCPU(), ver("libc6"), ver("musl"))
	if extra != "" {
		m += ", " + extra
	}
	return m
}

// renderTable is the result table as markdown, printed and embedded.
func renderTable(rows []Row) string {
	var b strings.Builder
	b.WriteString("| configuration | client | lookups | failed | p50 ms | p99 ms | max ms | > 1 s | colliding pkts | dropped |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		s := Summarize(r.Lookups)
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1f | %.1f | %.1f | %d | %d | %d |\n",
			r.Label, r.Client, s.N, s.Failures, s.P50, s.P99, s.Max, s.Over1s, r.Collisions, r.Drops)
	}
	return b.String()
}

// writeHeader is the top of both pages: what was measured, where, by what.
func writeHeader(b *strings.Builder, p page, per string) {
	fmt.Fprintf(b, "- **Command:** `%s` (as root)\n", p.opts.Command)
	fmt.Fprintf(b, "- **Commit:** %s\n", p.commit)
	fmt.Fprintf(b, "- **Date:** %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "- **Machine:** %s\n", p.lab.Machine)
	controls := ""
	for _, r := range p.rows {
		if r.Asked > 0 && r.Asked != p.opts.N {
			controls = fmt.Sprintf(" (negative controls: %d)", r.Asked)
		}
	}
	fmt.Fprintf(b, "- **Per row:** %d lookups%s of `%s` (AF_UNSPEC → one A and one AAAA query)%s; the emulation drops 1 in %d colliding packets\n", p.opts.N, controls, p.lab.Name, per, p.opts.Every)
}

// writeRowsShow lists, once per configuration and expectation, why a row
// looks the way it does, then what the comparisons between rows found.
func writeRowsShow(b *strings.Builder, rows []Row, checks []Check) {
	seen := map[string]bool{}
	for _, r := range rows {
		e, err := expect(r.Mode, r.Client)
		key := r.Label + "/" + e.Why
		if err != nil || seen[key] {
			continue
		}
		seen[key] = true
		fmt.Fprintf(b, "- **%s, %s:** %s.\n", r.Label, r.Client, e.Why)
	}
	var cmp []Check
	for _, c := range checks {
		if c.Compare {
			cmp = append(cmp, c)
		}
	}
	if len(cmp) > 0 {
		b.WriteString("\nRows compared (measured in this run, asserted):\n\n")
		for _, c := range cmp {
			fmt.Fprintf(b, "- %s: %s\n", c.Mark(), c.Text)
		}
	}
}

// writeAssertions lists the harness's checks under heading and then the
// per-row checks and comparisons.
func writeAssertions(b *strings.Builder, heading string, harness, rows []Check) {
	fmt.Fprintf(b, "%s:\n\n", heading)
	for _, c := range harness {
		fmt.Fprintf(b, "- %s: %s\n", c.Mark(), c.Text)
	}
	b.WriteString("\nPer-row checks and comparisons:\n\n")
	for _, c := range rows {
		fmt.Fprintf(b, "- %s: %s\n", c.Mark(), c.Text)
	}
}

// writeControls says, from the rows, what each negative control broke and
// what its row showed; the default row is dnsconfig's control (the same
// Service IP without dnsguard's options).
func writeControls(b *strings.Builder, rows []Row, checks []Check) {
	var lines []string
	for _, r := range rows {
		e, err := expect(r.Mode, r.Client)
		if err != nil || !e.Control {
			continue
		}
		s := Summarize(r.Lookups)
		verdict := "FAIL"
		if s.N > 0 && s.Max >= e.BoundMS {
			verdict = "PASS"
		}
		lines = append(lines, fmt.Sprintf("- %s: **%s × %s** — %d of %d lookups at or over %.0f ms (max %.0f ms, p50 %.0f ms); the control's rule dropped %d packets, the emulation %d of %d colliding ones.",
			verdict, r.Label, r.Client, over(r.Lookups, e.BoundMS), s.N, e.BoundMS, s.Max, s.P50, r.Blocked, r.Drops, r.Collisions))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### Negative controls\n\n")
	fmt.Fprintf(b, "Each mode with a component of dnsguard's own is run once more in the same lab with that component made unable to answer; its rows must show the stalls the healthy rows are bounded below (%.0f ms), or the lab fails — a bound the broken component passes proves nothing. dnsconfig has no component of its own: its control is the default row, the same Service IP without dnsguard's options.\n\n", FallbackBoundMS)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
}

// collisionShares says, from the rows of mode, how many lookups collided.
func collisionShares(rows []Row, mode string) string {
	var parts []string
	for _, r := range rows {
		if r.Mode != mode {
			continue
		}
		if e, err := expect(r.Mode, r.Client); err != nil || e.Once {
			continue // one collision is all a sticky single-request process can have
		}
		n := len(r.Lookups)
		if n == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d of %d (%.0f %%)", r.Client, r.Collisions, n, 100*float64(r.Collisions)/float64(n)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "In this run, lookups of the default rows that collided: " + strings.Join(parts, ", ") + "."
}

// failedSentence counts the failed lookups of the rows that are not
// negative controls.
func failedSentence(rows []Row) string {
	failed, all := 0, 0
	for _, r := range rows {
		if e, err := expect(r.Mode, r.Client); err == nil && e.Control {
			continue
		}
		s := Summarize(r.Lookups)
		failed += s.Failures
		all += s.N
	}
	return fmt.Sprintf("Across the rows other than the negative controls, %d of %d lookups failed.", failed, all)
}

// realRaceVerdict is the page's conclusion from the probe.
func realRaceVerdict(fired string) string {
	switch fired {
	case "no":
		return "The probe above did not hit the kernel's window here, which is why the lab emulates the drop."
	case "yes":
		return "Yet the probe above saw the kernel's own insert_failed or a stall: the real race fired on this machine too; the lab still emulates the drop so that each row's outcome is a matter of counting."
	}
	return "The real race was not probed in this run."
}
