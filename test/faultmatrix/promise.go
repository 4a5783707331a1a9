package faultmatrix

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Guarded are the modes whose promises are asserted; the Kubernetes
// default and dnsconfig are measured and reported only.
var Guarded = []string{"sidecar", "nodelocal"}

// Check is one assertion with its outcome.
type Check struct {
	OK   bool
	Text string
}

// Mark is PASS or FAIL.
func (c Check) Mark() string {
	if c.OK {
		return "PASS"
	}
	return "FAIL"
}

// Promises asserts what dnsguard promises, per cell of the guarded modes:
//
//   - b (2 % loss), d (CoreDNS rollout), e (node cache rolling update): every
//     one of the want[fault] lookups done, none failed, none over StallMS
//     (1 s) — the resolver retries a lost or orphaned query after its
//     per-try timeout, which adapts to CoreDNS's round-trip time (about
//     150 ms on this node; resolver/rto.go), not after the fixed 1 s
//     --timeout, now its ceiling, and never after the stub's retry;
//   - f (upstream unreachable for 10 s after the names were cached): none
//     failed, with --serve-stale (which the run sets: the chart default is
//     off);
//   - c (1,024 packets/s on the upstream, a name of its own per lookup
//     through the ndots:5 search path; a mode's two clients of one C
//     library run together, so each check is one per window): a smaller
//     share of lookups failed or over 1 s than the Kubernetes default's
//     with the same C library; and, for glibc, fewer upstream packets per
//     lookup. Not for musl: it asks every nameserver of resolv.conf at
//     once, so in sidecar and node-local mode the fallback 10.96.0.10 (and
//     CoreDNS's forward behind it) gets every query too; measured at
//     69aaa72+dirty: musl node-local 4.52 packets per lookup, the musl
//     default 4.37 (sidecar 3.59), glibc 2.01-2.05 against 4.20.
//     Seen failing: the negative control's extraSearchDomains (the node's
//     search domain kept, as ClusterFirst has it) …
//
// Every cell, asserted or not, must have measured something: a cell with an
// error or no lookup fails, so no promise passes on an empty row.
func Promises(cells []Cell, want map[string]int) []Check {
	var out []Check
	add := func(ok bool, format string, args ...any) {
		out = append(out, Check{OK: ok, Text: fmt.Sprintf(format, args...)})
	}
	windows := cWindows(cells)
	cDone := map[string]bool{} // fault c is one check per window
	for _, c := range cells {
		s := Summarize(c.Lookups)
		name := fmt.Sprintf("(%s) %s × %s", c.Fault, c.Mode, c.Client)
		if c.Err != "" || s.N == 0 {
			add(false, "%s measured: %d lookups, error %q", name, s.N, c.Err)
			continue
		}
		if !slices.Contains(Guarded, c.Mode) {
			continue
		}
		switch c.Fault {
		case "b", "d", "e":
			add(s.N == want[c.Fault] && s.Failures == 0 && s.Max < StallMS,
				"%s: %d of %d lookups, %d failed, max %.0f ms (%d over 1 s); want all, 0 failed, max < %d ms", name, s.N, want[c.Fault], s.Failures, s.Max, s.Over1s, StallMS)
		case "f":
			add(s.Failures == 0, "%s: %d of %d lookups failed while the upstream was unreachable; want 0 (serve-stale)", name, s.Failures, s.N)
		case "c":
			key := c.Mode + " × " + libc(c.Client)
			if cDone[key] {
				continue
			}
			cDone[key] = true
			w, d := windows[key], windows["off × "+libc(c.Client)]
			add(d.n > 0 && w.badShare() < d.badShare(),
				"(c) %s: %d of %d lookups failed or over 1 s (%.1f %%), the Kubernetes default %d of %d (%.1f %%); want a smaller share", key, w.bad, w.n, 100*w.badShare(), d.bad, d.n, 100*d.badShare())
			if libc(c.Client) == "glibc" {
				got, def := c.PerLookup(), d.perLookup
				add(!math.IsNaN(got) && !math.IsNaN(def) && got < def,
					"(c) %s: %.2f upstream packets per lookup, the Kubernetes default %.2f; want fewer", key, got, def)
			}
		}
	}
	return out
}

// window is one mode and C library of fault c: the lookups of its cells,
// those failed or over StallMS, and its upstream packets per lookup.
type window struct {
	n, bad    int
	perLookup float64
}

func (w window) badShare() float64 {
	if w.n == 0 {
		return math.NaN()
	}
	return float64(w.bad) / float64(w.n)
}

// cWindows sums fault c's cells per "mode × libc".
func cWindows(cells []Cell) map[string]window {
	out := map[string]window{}
	for _, c := range cells {
		if c.Fault != "c" {
			continue
		}
		key := c.Mode + " × " + libc(c.Client)
		w := out[key]
		w.perLookup = c.PerLookup()
		for _, l := range c.Lookups {
			w.n++
			if !l.OK || l.MS > StallMS {
				w.bad++
			}
		}
		out[key] = w
	}
	return out
}

// libc is a client's C library: the part of its name before the dash.
func libc(client string) string {
	l, _, _ := strings.Cut(client, "-")
	return l
}
