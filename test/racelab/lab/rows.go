package lab

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Lookup is one getaddrinfo/getent call as the clients print it.
type Lookup struct {
	// MS is the wall time of the lookup in milliseconds.
	MS float64
	// OK is false when the C library returned an error.
	OK bool
	// Addrs are the addresses an OK lookup returned, as printed.
	Addrs []string
}

// Row is one libc × configuration run with its node-side counters.
type Row struct {
	// Mode is the configuration: off, dnsconfig, sidecar,
	// sidecar-nofallback, nodelocal.
	Mode string
	// Label is the human name of the configuration, e.g. "a ClusterFirst (mode off)".
	Label string
	// Client is a Clients name: glibc-gai, glibc-gai-loop, ...
	Client string
	// Collisions counts packets the node saw for an already confirmed but
	// unanswered conntrack entry (the packets that can lose the insert race).
	Collisions int
	// Drops counts the collisions the emulation dropped (emulated insert_failed).
	Drops int
	// Blocked counts the packets a negative control's rule dropped.
	Blocked int
	// Asked is how many lookups the row asked for (0: Options.N).
	Asked int
	// Lookups holds every lookup in the order the client did them.
	Lookups []Lookup
}

// Stats summarises a row's latencies.
type Stats struct {
	N, Failures, Over1s int
	P50, P99, Max       float64
}

// ParseLookups parses the clients' "<ms> ok <n> <address>..." / "<ms> fail <why>"
// lines. Lines of any other shape are returned apart: a client's stderr
// (the cluster reads it from the pod log, merged) is no lookup, and the
// netns backend, which keeps stdout alone, treats any as an error.
func ParseLookups(text string) (ls []Lookup, other []string) {
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		ms, err := strconv.ParseFloat(f[0], 64)
		switch {
		case len(f) < 2 || err != nil || ms < 0 || math.IsNaN(ms):
			other = append(other, line)
		case f[1] == "ok":
			l := Lookup{MS: ms, OK: true}
			if len(f) > 3 {
				l.Addrs = f[3:]
			}
			ls = append(ls, l)
		case f[1] == "fail":
			ls = append(ls, Lookup{MS: ms})
		default:
			other = append(other, line)
		}
	}
	return ls, other
}

// percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least p% of the values at or below it.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// Summarize computes the table columns of one row (the race lab's rows and
// the fault matrix's cells). Failed lookups count in
// the latency distribution too: a failure after a timeout is a stall as well.
func Summarize(ls []Lookup) Stats {
	s := Stats{N: len(ls)}
	ms := make([]float64, 0, len(ls))
	for _, l := range ls {
		ms = append(ms, l.MS)
		if !l.OK {
			s.Failures++
		}
		if l.MS > 1000 {
			s.Over1s++
		}
	}
	sort.Float64s(ms)
	s.P50 = percentile(ms, 50)
	s.P99 = percentile(ms, 99)
	if len(ms) > 0 {
		s.Max = ms[len(ms)-1]
	} else {
		s.Max = math.NaN()
	}
	return s
}
