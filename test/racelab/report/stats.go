package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
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
}

// Row is one libc × configuration run with its node-side counters.
type Row struct {
	// Mode is the dnsguard mode the resolv.conf came from: off, dnsconfig, sidecar.
	Mode string
	// Label is the human name of the configuration, e.g. "a ClusterFirst (mode off)".
	Label string
	// Client is glibc-gai, glibc-gai-loop, glibc-getent or musl-gai.
	Client string
	// Collisions counts packets the node saw for an already confirmed but
	// unanswered conntrack entry (the packets that can lose the insert race).
	Collisions int
	// Drops counts the collisions the emulation dropped (emulated insert_failed).
	Drops int
	// Lookups holds every lookup in the order the client did them.
	Lookups []Lookup
}

// Stats summarises a row's latencies.
type Stats struct {
	N, Failures, Over1s int
	P50, P99, Max       float64
}

// readRows parses rows.tsv (mode, label, client, file, collisions, drops)
// and the per-lookup files it names.
func readRows(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open rows: %w", err)
	}
	defer f.Close()
	var rows []Row
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 6 {
			return nil, fmt.Errorf("%s:%d: want 6 tab-separated columns, got %d", path, line, len(cols))
		}
		r := Row{Mode: cols[0], Label: cols[1], Client: cols[2]}
		if r.Collisions, err = strconv.Atoi(cols[4]); err != nil {
			return nil, fmt.Errorf("%s:%d: collisions: %w", path, line, err)
		}
		if r.Drops, err = strconv.Atoi(cols[5]); err != nil {
			return nil, fmt.Errorf("%s:%d: drops: %w", path, line, err)
		}
		if r.Lookups, err = readLookups(cols[3]); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return rows, nil
}

// readLookups parses "<ms> ok <n>" / "<ms> fail <why>" lines.
func readLookups(path string) ([]Lookup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lookups: %w", err)
	}
	var out []Lookup
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: malformed line %q", path, i+1, line)
		}
		ms, err := strconv.ParseFloat(f[0], 64)
		if err != nil || ms < 0 || math.IsNaN(ms) {
			return nil, fmt.Errorf("%s:%d: bad latency %q", path, i+1, f[0])
		}
		switch f[1] {
		case "ok":
			out = append(out, Lookup{MS: ms, OK: true})
		case "fail":
			out = append(out, Lookup{MS: ms})
		default:
			return nil, fmt.Errorf("%s:%d: want ok or fail, got %q", path, i+1, f[1])
		}
	}
	return out, nil
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

// summarize computes the table columns of one row. Failed lookups count in
// the latency distribution too: a failure after a timeout is a stall as well.
func summarize(ls []Lookup) Stats {
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
