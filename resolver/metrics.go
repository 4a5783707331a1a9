package resolver

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsguard/dnsguard/cmd/buildinfo"
)

// The resolver writes the Prometheus text exposition format itself rather
// than linking prometheus/client_golang: that library (with protobuf and
// its collectors) adds about 2.9 MB to a 5.7 MB static binary, and the
// sidecar's size budget is 7 MiB. The format is checked in tests with the
// upstream parser and promlint. Each Server has its own Metrics, so tests
// can run several servers in one process.

type counter struct{ v atomic.Uint64 }

func (c *counter) inc()           { c.v.Add(1) }
func (c *counter) value() float64 { return float64(c.v.Load()) }

// counterVec is a counter with one label; for rare events (errors), so a
// mutex is fine.
type counterVec struct {
	mu sync.Mutex
	m  map[string]*counter
}

func (v *counterVec) inc(label string) {
	v.mu.Lock()
	if v.m == nil {
		v.m = map[string]*counter{}
	}
	c, ok := v.m[label]
	if !ok {
		c = &counter{}
		v.m[label] = c
	}
	v.mu.Unlock()
	c.inc()
}

func (v *counterVec) snapshot() map[string]float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]float64, len(v.m))
	for k, c := range v.m {
		out[k] = c.value()
	}
	return out
}

// histogram is a fixed-bucket Prometheus histogram.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// latencyBuckets spans loopback cache misses (sub-millisecond) up to the
// per-try timeout.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

type upstreamMetrics struct {
	name        string
	lat         *histogram
	errs        *counterVec
	queries     *counter
	retransmits *counter
	rto         func() time.Duration
}

// The upstream's counters; a forwarder without metrics has u.m nil.

func (u *upstream) countQuery() {
	if u.m != nil {
		u.m.queries.inc()
	}
}

func (u *upstream) countErr(reason string) {
	if u.m != nil {
		u.m.errs.inc(reason)
	}
}

func (u *upstream) countRetransmit() {
	if u.m != nil {
		u.m.retransmits.inc()
	}
}

func (u *upstream) observe(d time.Duration) {
	if u.m != nil {
		u.m.lat.observe(d.Seconds())
	}
}

// Metrics holds one resolver instance's counters.
type Metrics struct {
	queries     [2]counter // udp, tcp
	responses   [17]counter
	cacheHits   counter
	cacheMisses counter
	stale       counter
	prefetches  counter
	coalesced   counter
	truncated   counter
	dropped     counterVec // reason
	failures    counter    // resolutions that got no usable answer

	mu        sync.Mutex
	upstreams []*upstreamMetrics

	// gauges read at scrape time
	cacheEntries func() int
	cacheBytes   func() int
	tcpConns     func() int
	inflight     func() int
	healthyUps   func() int
}

// NewMetrics returns an empty metrics set.
func NewMetrics() *Metrics { return &Metrics{} }

// upstream registers one upstream's series; rto reads its current
// per-try timeout at scrape time.
func (m *Metrics) upstream(name string, rto func() time.Duration) *upstreamMetrics {
	um := &upstreamMetrics{name: name, lat: newHistogram(latencyBuckets), errs: &counterVec{}, queries: &counter{}, retransmits: &counter{}, rto: rto}
	m.mu.Lock()
	m.upstreams = append(m.upstreams, um)
	m.mu.Unlock()
	return um
}

func (m *Metrics) response(reply []byte) {
	if len(reply) >= 4 {
		m.responses[reply[3]&0xF].inc()
	}
}

var rcodeNames = [16]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15"}

// WriteTo writes all metrics in the Prometheus text format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	p := func(name, typ, help string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	v := func(name, labels string, val float64) {
		if labels != "" {
			labels = "{" + labels + "}"
		}
		bw.WriteString(name + labels + " " + strconv.FormatFloat(val, 'g', -1, 64) + "\n")
	}
	const ns = "dnsguard_resolver_"
	p(ns+"queries_total", "counter", "Client queries received, by transport.")
	v(ns+"queries_total", `proto="udp"`, m.queries[0].value())
	v(ns+"queries_total", `proto="tcp"`, m.queries[1].value())
	p(ns+"responses_total", "counter", "Responses sent to clients, by rcode.")
	for i, n := range rcodeNames {
		if c := m.responses[i].value(); c > 0 || i <= 5 {
			v(ns+"responses_total", `rcode="`+n+`"`, c)
		}
	}
	p(ns+"cache_hits_total", "counter", "Queries answered from a fresh cache entry.")
	v(ns+"cache_hits_total", "", m.cacheHits.value())
	p(ns+"cache_misses_total", "counter", "Queries that needed an upstream answer.")
	v(ns+"cache_misses_total", "", m.cacheMisses.value())
	p(ns+"stale_answers_total", "counter", "Expired answers served because upstreams failed (RFC 8767).")
	v(ns+"stale_answers_total", "", m.stale.value())
	p(ns+"prefetches_total", "counter", "Background refreshes of popular entries about to expire.")
	v(ns+"prefetches_total", "", m.prefetches.value())
	p(ns+"coalesced_total", "counter", "Queries that waited for an identical query already in flight.")
	v(ns+"coalesced_total", "", m.coalesced.value())
	p(ns+"truncated_total", "counter", "UDP answers truncated to the client's buffer size.")
	v(ns+"truncated_total", "", m.truncated.value())
	p(ns+"dropped_total", "counter", "Client packets answered with nothing or an error, by reason.")
	d := m.dropped.snapshot()
	for _, k := range sortedKeys(d) {
		v(ns+"dropped_total", `reason="`+k+`"`, d[k])
	}
	p(ns+"resolution_failures_total", "counter", "Resolutions for which no upstream gave a usable answer.")
	v(ns+"resolution_failures_total", "", m.failures.value())
	gauge := func(name, help string, f func() int) {
		if f == nil {
			return
		}
		p(ns+name, "gauge", help)
		v(ns+name, "", float64(f()))
	}
	gauge("cache_entries", "Entries in the cache, fresh or stale.", m.cacheEntries)
	gauge("cache_bytes", "Approximate bytes held by cache entries.", m.cacheBytes)
	gauge("tcp_connections", "Open client TCP connections.", m.tcpConns)
	gauge("inflight_resolutions", "Upstream resolutions in progress.", m.inflight)
	gauge("upstreams_healthy", "Upstreams currently considered healthy.", m.healthyUps)

	m.mu.Lock()
	ups := append([]*upstreamMetrics(nil), m.upstreams...)
	m.mu.Unlock()
	p(ns+"upstream_queries_total", "counter", "Queries sent to each upstream (every try).")
	for _, u := range ups {
		v(ns+"upstream_queries_total", `upstream="`+u.name+`"`, u.queries.value())
	}
	p(ns+"upstream_retransmits_total", "counter", "Tries after which the resolution asked again because no answer came within the adaptive per-try timeout (the try keeps listening; a spurious retransmit costs a query, not a failure).")
	for _, u := range ups {
		v(ns+"upstream_retransmits_total", `upstream="`+u.name+`"`, u.retransmits.value())
	}
	p(ns+"upstream_rto_seconds", "gauge", "Current per-try timeout of each upstream: smoothed RTT + 4 x RTT variance within --min-timeout..--timeout (400 ms before the first answer, within the same bounds).")
	for _, u := range ups {
		v(ns+"upstream_rto_seconds", `upstream="`+u.name+`"`, u.rto().Seconds())
	}
	// reason="timeout" is a try that outlived its per-try timeout and got
	// no answer at all while its resolution lasted (a lost packet or a
	// dead upstream), counted when the resolution ends; a try answered
	// late is a retransmit only. The other reasons are answers or errors
	// that failed the try at once.
	p(ns+"upstream_errors_total", "counter", "Failed upstream tries, by upstream and reason (timeout: no answer at all while the resolution lasted, and not sent after a try its upstream answered).")
	for _, u := range ups {
		s := u.errs.snapshot()
		for _, k := range sortedKeys(s) {
			v(ns+"upstream_errors_total", `upstream="`+u.name+`",reason="`+k+`"`, s[k])
		}
	}
	p(ns+"upstream_duration_seconds", "histogram", "Latency of successful upstream tries.")
	for _, u := range ups {
		l := `upstream="` + u.name + `"`
		var cum uint64
		for i, b := range u.lat.bounds {
			cum += u.lat.counts[i].Load()
			v(ns+"upstream_duration_seconds_bucket", l+`,le="`+strconv.FormatFloat(b, 'g', -1, 64)+`"`, float64(cum))
		}
		cum += u.lat.counts[len(u.lat.bounds)].Load()
		v(ns+"upstream_duration_seconds_bucket", l+`,le="+Inf"`, float64(cum))
		v(ns+"upstream_duration_seconds_sum", l, math.Float64frombits(u.lat.sum.Load()))
		v(ns+"upstream_duration_seconds_count", l, float64(u.lat.count.Load()))
	}
	names, values := buildinfo.Labels("resolver")
	var bl []string
	for i := range names {
		bl = append(bl, names[i]+`="`+values[i]+`"`)
	}
	p(buildinfo.Metric, "gauge", buildinfo.Help)
	v(buildinfo.Metric, strings.Join(bl, ","), 1)
	// The standard Go collector's name, so dashboards and the soak and
	// fault tests can watch for goroutine leaks without client_golang.
	p("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	v("go_goroutines", "", float64(runtime.NumGoroutine()))
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write metrics: %w", err)
	}
	return int64(bw.Buffered()), nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
