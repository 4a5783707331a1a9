// Package faultmatrix is the fault matrix's report (issue 19, item 2): the
// cells measured on the real node by test/e2e (TestFaultMatrix), what
// dnsguard promises per fault and mode (Promises), the table, the plot and
// the generated page docs/fault-matrix.md. The measuring lives in test/e2e;
// this package holds what can be tested without a cluster.
package faultmatrix

import (
	"math"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// Fault names a fault of the matrix; (a), the A/AAAA insert race, is the
// race lab's (docs/race-lab-cluster.md) and is not repeated here.
type Fault struct {
	ID    string // "b" … "f"
	Title string
	// How says how the kernel or Kubernetes applied it, for the page.
	How string
}

// Cell is one fault × mode × client: the lookups one client did while the
// fault was applied.
type Cell struct {
	Fault, Mode, Client string
	Lookups             []lab.Lookup
	// Upstream counts packets sent to the node's upstream (10.200.0.1:53)
	// during the window the cell ran in; -1 when not counted. Fault c runs
	// each mode and C library in a window of its own; the other faults run
	// every mode at once, so their cells share one count.
	Upstream int
	// WindowLookups is the number of lookups of every cell of that window
	// (the denominator of Upstream).
	WindowLookups int
	// Err is why the cell could not measure (pod not ready, exec failed).
	Err string
}

// Stats are a cell's columns, as the race lab computes them for a row
// (lab.Summarize; failed lookups count in the latency distribution too).
type Stats = lab.Stats

// StallMS is the stall threshold of the "> 1 s" column: far above any
// healthy lookup on this node.
const StallMS = 1000

// RetryMS is the C library's own retry (timeout:2 in the pods dnsguard
// patches): a lookup that reaches it waited for the stub to give up on the
// sidecar or node cache, which is what dnsguard exists to prevent. Fault
// c's glibc windows are bounded by it (Promises); (b), (d) and (e) by
// StallMS, now that the resolver's per-try timeout adapts to the RTT.
const RetryMS = 2000

// Summarize computes a cell's columns.
func Summarize(ls []lab.Lookup) Stats { return lab.Summarize(ls) }

// PerLookup is upstream packets per lookup, NaN when not attributable.
func (c Cell) PerLookup() float64 {
	if c.Upstream < 0 || c.WindowLookups == 0 {
		return math.NaN()
	}
	return float64(c.Upstream) / float64(c.WindowLookups)
}
