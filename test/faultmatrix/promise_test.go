package faultmatrix

import (
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

func lookups(ms ...float64) []lab.Lookup {
	var ls []lab.Lookup
	for _, m := range ms {
		ls = append(ls, lab.Lookup{MS: m, OK: m >= 0})
	}
	for i := range ls {
		if ls[i].MS < 0 {
			ls[i].MS = -ls[i].MS
		}
	}
	return ls
}

// TestPromises: each promise fails on the cell that breaks it, and the
// unguarded modes are never asserted. Negative control: with the (b), (d),
// (e) bound back at RetryMS (2 s) the 1004 ms and 1000 ms cells passed and
// the test failed.
func TestPromises(t *testing.T) {
	want := map[string]int{"b": 3, "d": 3, "e": 3}
	tests := []struct {
		name string
		cell Cell
		ok   []bool // outcomes of the checks the cell yields
	}{
		{"sidecar clean", Cell{Fault: "b", Mode: "sidecar", Client: "glibc-gai", Lookups: lookups(1, 2, 3)}, []bool{true}},
		{"sidecar retried by the resolver", Cell{Fault: "b", Mode: "sidecar", Client: "glibc-gai", Lookups: lookups(1, 2, 153)}, []bool{true}},
		{"sidecar retried within the bound", Cell{Fault: "d", Mode: "sidecar", Client: "musl-gai", Lookups: lookups(1, 2, 999)}, []bool{true}},
		// The fixed 1 s per-try timeout of before: a lost query cost 1.004 s.
		{"sidecar stall of a fixed 1 s timeout", Cell{Fault: "b", Mode: "sidecar", Client: "glibc-gai", Lookups: lookups(1, 2, 1004)}, []bool{false}},
		{"nodelocal stall at 1 s", Cell{Fault: "e", Mode: "nodelocal", Client: "glibc-gai", Lookups: lookups(1, 2, 1000)}, []bool{false}},
		{"sidecar stall to the stub's retry", Cell{Fault: "b", Mode: "sidecar", Client: "glibc-gai", Lookups: lookups(1, 2, 2003)}, []bool{false}},
		{"nodelocal failure", Cell{Fault: "e", Mode: "nodelocal", Client: "musl-gai", Lookups: lookups(1, 2, -3)}, []bool{false}},
		{"nodelocal short row", Cell{Fault: "d", Mode: "nodelocal", Client: "musl-gai", Lookups: lookups(1, 2)}, []bool{false}},
		{"default stalls are reported only", Cell{Fault: "b", Mode: "off", Client: "glibc-gai", Lookups: lookups(5000, 5000, 5000)}, nil},
		{"empty default row fails", Cell{Fault: "b", Mode: "off", Client: "glibc-gai"}, []bool{false}},
		{"error fails", Cell{Fault: "d", Mode: "dnsconfig", Client: "glibc-gai", Lookups: lookups(1), Err: "exec"}, []bool{false}},
		{"stale slow but answered", Cell{Fault: "f", Mode: "sidecar", Client: "musl-gai", Lookups: lookups(1, 1800, 2)}, []bool{true}},
		{"stale failed", Cell{Fault: "f", Mode: "nodelocal", Client: "musl-gai", Lookups: lookups(1, -1800, 2)}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Promises([]Cell{tt.cell}, want)
			if len(got) != len(tt.ok) {
				t.Fatalf("%d checks %v, want %d", len(got), got, len(tt.ok))
			}
			for i, c := range got {
				if c.OK != tt.ok[i] {
					t.Errorf("check %q: ok %v, want %v", c.Text, c.OK, tt.ok[i])
				}
			}
		})
	}
}

// TestPromiseUpstream: fault c checks each guarded glibc window (mode ×
// C library) against the default's: no failure and no lookup at the stub's
// retry, and at most three quarters of its upstream packets per lookup;
// musl windows are reported only.
func TestPromiseUpstream(t *testing.T) {
	cell := func(mode, client string, up int, ms ...float64) Cell {
		return Cell{Fault: "c", Mode: mode, Client: client, Lookups: lookups(ms...), Upstream: up, WindowLookups: 4}
	}
	def := []Cell{cell("off", "glibc-gai", 16, 1, 5000), cell("off", "glibc-gai-loop", 16, 1, 1),
		cell("off", "musl-gai", 18, 1, 1, 1, -2)}
	for _, tt := range []struct {
		name     string
		cells    []Cell
		wantPass []bool // per glibc window: stalls, then packets
	}{
		{"half the packets, no stall", []Cell{cell("sidecar", "glibc-gai", 8, 1, 1), cell("sidecar", "glibc-gai-loop", 8, 1, 1030)}, []bool{true, true}},
		{"node search domain kept: 0.94 of the default's packets", []Cell{cell("nodelocal", "glibc-gai", 15, 1, 1)}, []bool{true, false}},
		{"a lookup at the stub's retry", []Cell{cell("nodelocal", "glibc-gai", 8, 1, 2016), cell("nodelocal", "glibc-gai-loop", 8, 1, 1)}, []bool{false, true}},
		{"a failure", []Cell{cell("sidecar", "glibc-gai", 8, 1, -3)}, []bool{false, true}},
		{"musl is reported only", []Cell{cell("sidecar", "musl-gai", 30, 1, -2500, 1, 1)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Promises(append(slices.Clone(def), tt.cells...), nil)
			if len(got) != len(tt.wantPass) {
				t.Fatalf("checks %v, want %d", got, len(tt.wantPass))
			}
			for i, c := range got {
				if c.OK != tt.wantPass[i] {
					t.Errorf("check %q: ok %v, want %v", c.Text, c.OK, tt.wantPass[i])
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(lookups(5, 1, 3, -2000, 4))
	if s.N != 5 || s.Failures != 1 || s.Over1s != 1 || s.P50 != 4 || s.P99 != 2000 || s.Max != 2000 {
		t.Errorf("Summarize = %+v", s)
	}
}

// TestPageAndPlot: the page's sentences come from the cells, the plot is
// well-formed XML.
func TestPageAndPlot(t *testing.T) {
	r := Run{Commit: "abc+dirty", Faults: []Fault{{ID: "b", Title: "loss"}},
		Modes: []Mode{{Name: "off", Label: "a default"}, {Name: "sidecar", Label: "c sidecar"}},
		Cells: []Cell{
			{Fault: "b", Mode: "off", Client: "glibc-gai", Lookups: lookups(1, 5000, -5000), Upstream: -1},
			{Fault: "b", Mode: "sidecar", Client: "glibc-gai", Lookups: lookups(1, 2, 3), Upstream: -1},
		}}
	md := r.Markdown("fault-matrix.svg")
	for _, want := range []string{"a default 1 of 3 lookups failed and 2 took over 1 s (max 5000.0 ms)", "c sidecar 0 of 3 lookups failed and 0 took over 1 s", "abc+dirty"} {
		if !strings.Contains(md, want) {
			t.Errorf("page lacks %q:\n%s", want, md)
		}
	}
	d := xml.NewDecoder(strings.NewReader(r.SVG()))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("svg: %v", err)
			}
			break
		}
	}
}
