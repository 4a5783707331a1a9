package faultmatrix

import (
	"fmt"
	"math"
	"slices"
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
//   - c (1,024 packets/s on the upstream): fewer upstream packets per lookup
//     than the Kubernetes default (the four clients of a mode run together,
//     so the count is one per mode).
//
// Every cell, asserted or not, must have measured something: a cell with an
// error or no lookup fails, so no promise passes on an empty row.
func Promises(cells []Cell, want map[string]int) []Check {
	var out []Check
	add := func(ok bool, format string, args ...any) {
		out = append(out, Check{OK: ok, Text: fmt.Sprintf(format, args...)})
	}
	def := map[string]float64{} // fault c: the default's per-lookup, per client
	for _, c := range cells {
		if c.Fault == "c" && c.Mode == "off" {
			def[c.Client] = c.PerLookup()
		}
	}
	cDone := map[string]bool{} // fault c is one count per mode
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
			if cDone[c.Mode] {
				continue
			}
			cDone[c.Mode] = true
			name = fmt.Sprintf("(c) %s", c.Mode)
			d, got := def[c.Client], c.PerLookup()
			add(!math.IsNaN(got) && !math.IsNaN(d) && got < d,
				"%s: %.2f upstream packets per lookup, the Kubernetes default %.2f; want fewer", name, got, d)
		}
	}
	return out
}
