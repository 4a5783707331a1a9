//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// repoRoot is where bin/ lives: go test runs a package's tests in its
// directory, test/faults. (Not runtime.Caller: under -trimpath, which the
// Makefile sets, it names the import path, not the file.)
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func binPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built (run make build or test/faults/run.sh): %v", p, err)
	}
	return p
}

// resolverProc is bin/resolver listening on loopback.
type resolverProc struct {
	*harness.Proc
	addr   string // DNS address
	health string // health/metrics address
}

// startResolver runs bin/resolver on free loopback ports with the given
// extra flags and waits until /readyz answers 200.
func startResolver(t *testing.T, port int, extra ...string) *resolverProc {
	t.Helper()
	if port == 0 {
		port = harness.MustFreePort(t)
	}
	hport := harness.MustFreePort(t)
	r := &resolverProc{
		addr:   fmt.Sprintf("127.0.0.1:%d", port),
		health: fmt.Sprintf("127.0.0.1:%d", hport),
	}
	args := append([]string{"--listen=" + r.addr, "--health-listen=" + r.health, "--log-level=warn"}, extra...)
	r.Proc = harness.MustStart(t, "resolver", append([]string{binPath(t, "resolver")}, args...)...)
	r.waitReady(t, 5*time.Second)
	return r
}

func (r *resolverProc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	err := r.WaitUntil(within, 20*time.Millisecond, func() bool {
		resp, err := httpClient.Get("http://" + r.health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		t.Fatalf("resolver on %s: %v", r.addr, err)
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// metric returns the value of the first sample of name (exact name,
// optionally with labels in the selector, e.g. `x{a="b"}`) from a
// Prometheus text page; ok is false when it is absent.
func metric(page, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sel, val, ok := strings.Cut(line, " ")
		if !ok || sel != name {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

func (r *resolverProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := httpClient.Get("http://" + r.health + "/metrics")
	if err != nil {
		t.Fatalf("resolver metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("resolver metrics: %v", err)
	}
	return string(b)
}

// usage is a goroutine count (-1: unknown) and an RSS.
type usage struct {
	goroutines int
	rssKiB     int64
}

func (u usage) String() string {
	return fmt.Sprintf("goroutines=%d rss=%.1fMiB", u.goroutines, float64(u.rssKiB)/1024)
}

// growthLimits: fail on goroutines > base+20 or RSS > 2×base+4 MiB once
// load has stopped and the process had a short while to settle.
func withinLimits(base, now usage) bool {
	if base.goroutines >= 0 && now.goroutines > base.goroutines+20 {
		return false
	}
	return now.rssKiB <= 2*base.rssKiB+4096
}

// checkSettles polls sample until it is within the growth limits of base
// (at most settle), then reports the numbers; failure is a test error.
func checkSettles(t *testing.T, phase string, base usage, settle time.Duration, sample func() usage) usage {
	t.Helper()
	deadline := time.Now().Add(settle)
	var now usage
	for {
		now = sample()
		if withinLimits(base, now) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ok := withinLimits(base, now)
	t.Logf("growth after %s: baseline %v, now %v (limits: goroutines <= base+20, rss <= 2*base+4MiB): %s",
		phase, base, now, map[bool]string{true: "ok", false: "GROWN"}[ok])
	if !ok {
		t.Errorf("%s: resources did not return to baseline within %s: baseline %v, now %v", phase, settle, base, now)
	}
	return now
}

// usage samples the resolver. The goroutine count comes from go_goroutines
// on /metrics; its absence is reported as a test error (once) and the
// count treated as unknown.
func (r *resolverProc) usage(t *testing.T) usage {
	t.Helper()
	u := usage{goroutines: -1, rssKiB: harness.MustMem(t, r.PID()).RSS}
	if g, ok := metric(r.metrics(t), "go_goroutines"); ok {
		u.goroutines = int(g)
	} else {
		reportMissingGoroutines(t)
	}
	return u
}

var missingOnce sync.Map

func reportMissingGoroutines(t *testing.T) {
	if _, loaded := missingOnce.LoadOrStore(t.Name(), true); !loaded {
		t.Errorf("bin/resolver /metrics has no go_goroutines sample: goroutine growth cannot be checked")
	}
}

// outcome of one client query.
type outcome struct {
	name    string
	sent    time.Time
	latency time.Duration
	rcode   int // -1: no answer
	err     error
	ips     []net.IP
	ttls    []uint32
}

// query sends one A query over UDP and waits at most timeout.
func query(addr, name string, timeout time.Duration) outcome {
	c := &dns.Client{Net: "udp", Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	o := outcome{name: name, sent: time.Now(), rcode: -1}
	r, _, err := c.Exchange(m, addr)
	o.latency = time.Since(o.sent)
	if err != nil {
		o.err = err
		return o
	}
	o.rcode = r.Rcode
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			o.ips = append(o.ips, a.A)
			o.ttls = append(o.ttls, a.Hdr.Ttl)
		}
	}
	return o
}

// kind classifies an outcome for reports.
func (o outcome) kind() string {
	switch {
	case o.err == nil:
		return dns.RcodeToString[o.rcode]
	case isTimeout(o.err):
		return "timeout"
	case errors.Is(o.err, syscall.ECONNREFUSED):
		return "refused"
	default:
		return "error"
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// runQueries sends the names with at most conc queries in flight.
func runQueries(addr string, names []string, conc int, timeout time.Duration) []outcome {
	out := make([]outcome, len(names))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, n := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = query(addr, n, timeout)
		}()
	}
	wg.Wait()
	return out
}

// summary counts outcomes by kind and gives latency percentiles.
func summary(os []outcome) string {
	counts := map[string]int{}
	lats := make([]time.Duration, 0, len(os))
	for _, o := range os {
		counts[o.kind()]++
		lats = append(lats, o.latency)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d queries:", len(os))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	fmt.Fprintf(&b, "; latency p50=%s p90=%s p99=%s max=%s", pct(lats, 50), pct(lats, 90), pct(lats, 99), pct(lats, 100))
	return b.String()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	if i > len(s) {
		i = len(s)
	}
	return s[i-1].Round(100 * time.Microsecond)
}

// checkAnswer fails the test when a NOERROR answer does not carry exactly
// the address the upstream gives the name (a forged or mixed-up answer).
func checkAnswer(t *testing.T, o outcome) {
	t.Helper()
	if o.err != nil || o.rcode != dns.RcodeSuccess {
		return
	}
	want := ipFor(o.name)
	if len(o.ips) != 1 || !o.ips[0].Equal(want) {
		t.Errorf("query %s: answer %v, want exactly %v", o.name, o.ips, want)
	}
}

// ctxSleep is a bounded sleep.
func ctxSleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
