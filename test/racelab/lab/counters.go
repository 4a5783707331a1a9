package lab

import (
	"fmt"
	"strconv"
	"strings"
)

// ResolverCounters are the resolver's own Prometheus counters
// (resolver/metrics.go) that show what it did with a row's lookups.
type ResolverCounters struct {
	// Queries: client queries received (UDP and TCP).
	Queries float64
	// Upstream: queries sent to upstreams, every try (summed over them).
	Upstream float64
	// CacheHits: queries answered from a fresh cache entry.
	CacheHits float64
	// Coalesced: queries that waited for an identical query in flight
	// (its answer crossed the node once for both).
	Coalesced float64
}

// Sub is c minus before: what happened between two scrapes.
func (c ResolverCounters) Sub(before ResolverCounters) ResolverCounters {
	return ResolverCounters{Queries: c.Queries - before.Queries, Upstream: c.Upstream - before.Upstream, CacheHits: c.CacheHits - before.CacheHits, Coalesced: c.Coalesced - before.Coalesced}
}

// String is the counters as the page lists them.
func (c ResolverCounters) String() string {
	return fmt.Sprintf("%.0f client queries received, %.0f sent upstream, %.0f coalesced with one in flight, %.0f cache hits", c.Queries, c.Upstream, c.Coalesced, c.CacheHits)
}

// ParseResolverCounters reads the counters from a /metrics page; a page
// without them is an error (a scrape of something else).
func ParseResolverCounters(text string) (ResolverCounters, error) {
	var c ResolverCounters
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		var dst *float64
		switch name {
		case "dnsguard_resolver_queries_total":
			dst = &c.Queries
		case "dnsguard_resolver_upstream_queries_total":
			dst = &c.Upstream
		case "dnsguard_resolver_cache_hits_total":
			dst = &c.CacheHits
		case "dnsguard_resolver_coalesced_total":
			dst = &c.Coalesced
		default:
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: %w", line, err)
		}
		*dst += v
		seen[name] = true
	}
	for _, n := range []string{"dnsguard_resolver_queries_total", "dnsguard_resolver_upstream_queries_total", "dnsguard_resolver_cache_hits_total", "dnsguard_resolver_coalesced_total"} {
		if !seen[n] {
			return c, fmt.Errorf("no %s in the metrics (%d bytes)", n, len(text))
		}
	}
	return c, nil
}

// CheckForwarded is the assertion on a resolver's counters over a row (or a
// configuration's rows): every lookup is a name no one asked before (the
// cluster lab) or a name with TTL 0 (the netns lab), so each of the row's A
// and AAAA queries (2 per lookup) must have gone upstream, or waited for an
// identical one that did (coalesced: the netns lab's fixed name, asked by
// two clients of a pod at once), and none may have been answered from the
// cache. A resolver that answered from anywhere else — or not at all —
// fails it.
//
// Negative control (cluster lab, issue 19): a node cache that answered
// every AAAA with NODATA of its own, never forwarding it, showed 801
// queries received but 400 sent upstream for 400 lookups, and failed here.
func CheckForwarded(scope string, c ResolverCounters, lookups int) Check {
	want := 2 * float64(lookups)
	ok := c.Upstream+c.Coalesced >= want && c.Queries >= want && c.CacheHits == 0
	return Check{OK: ok, Text: fmt.Sprintf("%s: %s for %d lookups (want at least %.0f received and %.0f sent upstream or coalesced, no cache hit)", scope, c, lookups, want, want)}
}
