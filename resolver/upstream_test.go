package resolver

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestConcurrentQueriesUseSeparateSockets(t *testing.T) {
	// Every upstream query waits 200 ms, so all 20 are in flight at once.
	up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: 200 * time.Millisecond}))
	s := startServer(t, testConfig(up.addr))
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := ask(t, s, "udp", fmt.Sprintf("h%d.example.", i), dns.TypeA, 0)
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("h%d: rcode %s", i, dns.RcodeToString[r.Rcode])
			}
		})
	}
	wg.Wait()
	qs := up.queries()
	if len(qs) != n {
		t.Fatalf("upstream got %d queries, want %d", len(qs), n)
	}
	ports := map[uint16]bool{}
	ids := map[uint16]bool{}
	for _, q := range qs {
		ports[q.src.Port()] = true
		ids[q.id] = true
	}
	if len(ports) != n {
		t.Fatalf("%d concurrent upstream queries used only %d source ports", n, len(ports))
	}
	if len(ids) < n-2 {
		t.Fatalf("query IDs not random: %d distinct of %d", len(ids), n)
	}
	// Sequential queries: each from a fresh port, none repeating a port
	// of the last recentPorts queries (the concurrent ones included).
	for i := range 40 {
		ask(t, s, "udp", fmt.Sprintf("seq%d.example.", i), dns.TypeA, 0)
	}
	for _, q := range up.queries()[n:] {
		if ports[q.src.Port()] {
			t.Fatalf("sequential query reused source port %d", q.src.Port())
		}
		ports[q.src.Port()] = true
	}
	// Retries (a try timing out on a loaded machine) count too: still
	// one port per query.
	if all := len(up.queries()); len(ports) != all {
		t.Fatalf("%d upstream queries used %d ports", all, len(ports))
	}
}

// firstOf returns the first query for qtype.
func firstOf(t *testing.T, qs []seen, qtype uint16) seen {
	t.Helper()
	for _, q := range qs {
		if q.qtype == qtype {
			return q
		}
	}
	t.Fatalf("no %s query upstream", dns.TypeToString[qtype])
	return seen{}
}

func TestAAndAAAASerialized(t *testing.T) {
	const delay = 300 * time.Millisecond
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: delay, dns.TypeAAAA: delay}))
			cfg := testConfig(up.addr)
			cfg.ParallelAAAA = parallel
			cfg.Timeout = 2 * time.Second
			cfg.TotalTimeout = 3 * time.Second
			s := startServer(t, cfg)
			var wg sync.WaitGroup
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				wg.Go(func() {
					if r := ask(t, s, "udp", "www.example.", qt, 0); len(r.Answer) != 1 {
						t.Errorf("%s: %v", dns.TypeToString[qt], r)
					}
				})
			}
			wg.Wait()
			qs := up.queries()
			a, aaaa := firstOf(t, qs, dns.TypeA), firstOf(t, qs, dns.TypeAAAA)
			first, second := a, aaaa
			if aaaa.at.Before(a.at) {
				first, second = aaaa, a
			}
			gap := second.at.Sub(first.at)
			if parallel && first.src == second.src {
				t.Fatalf("A and AAAA in flight together shared source %v", first.src)
			}
			if parallel && gap > delay/2 {
				t.Fatalf("parallel mode: second query left %v after the first", gap)
			}
			if !parallel && gap < delay-20*time.Millisecond {
				t.Fatalf("serialized mode: second query left %v after the first, before its answer (%v)", gap, delay)
			}
		})
	}
}

// TestSerializedSecondLeavesAfterTimeout: the upstream never answers A;
// AAAA must still go out once A's first try passed its per-try timeout,
// the adaptive one (rto.go): the initial 400 ms before any answer, about
// 150 ms once the upstream's RTT is learned. Negative control: with the
// serializer's hold ended at the fixed --timeout (tryTimeout returning
// f.maxTimeout) both cases failed, AAAA answered after 1 s.
func TestSerializedSecondLeavesAfterTimeout(t *testing.T) {
	for _, tt := range []struct {
		name     string
		warm     bool
		min, max time.Duration
	}{
		{"initial timeout", false, 350 * time.Millisecond, 600 * time.Millisecond},
		{"learned timeout", true, 120 * time.Millisecond, 350 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
				if s.qtype == dns.TypeA && s.name == "www.example." {
					return nil
				}
				return zoneAnswer(t, 300, nil)(s, req)
			})
			cfg := testConfig(up.addr)
			cfg.Timeout = time.Second
			cfg.TotalTimeout = 2 * time.Second
			s := startServer(t, cfg)
			if tt.warm {
				for i := range 3 {
					ask(t, s, "udp", fmt.Sprintf("warm%d.example.", i), dns.TypeA, 0)
				}
			}
			var wg sync.WaitGroup
			wg.Go(func() { ask(t, s, "udp", "www.example.", dns.TypeA, 0) })
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			r := ask(t, s, "udp", "www.example.", dns.TypeAAAA, 0)
			took := time.Since(start)
			wg.Wait()
			if len(r.Answer) != 1 {
				t.Fatalf("AAAA answer %v", r)
			}
			if took < tt.min-20*time.Millisecond || took > tt.max {
				t.Fatalf("AAAA answered after %v, want within %v..%v, after A's first try timed out", took, tt.min, tt.max)
			}
		})
	}
}

func TestCoalescing(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: 200 * time.Millisecond}))
	// A per-try timeout well above the upstream's 200 ms, so that a loaded
	// machine does not turn the one query into a retry.
	cfg := testConfig(up.addr)
	cfg.Timeout, cfg.TotalTimeout = time.Second, 2*time.Second
	s := startServer(t, cfg)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Mixed case: still one question for the cache and upstream.
			name := "www.example."
			if i%2 == 1 {
				name = "WWW.Example."
			}
			r := ask(t, s, "udp", name, dns.TypeA, 0)
			if len(r.Answer) != 1 || r.Question[0].Name != name || !strings.EqualFold(r.Answer[0].Header().Name, name) {
				t.Errorf("reply %v", r)
			}
		})
	}
	wg.Wait()
	if got := len(up.queries()); got != 1 {
		t.Fatalf("%d identical concurrent queries caused %d upstream queries, want 1", n, got)
	}
	if c := s.metrics.coalesced.value(); c < n/2 {
		t.Fatalf("coalesced counter %v", c)
	}
}

func TestTruncatedUpstreamRetriedOverTCP(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	s := startServer(t, testConfig(up.addr))
	r := ask(t, s, "tcp", "big.example.", dns.TypeTXT, 0)
	if len(r.Answer) != 6 || r.Truncated {
		t.Fatalf("want all 6 TXT records over TCP, got %d (tc=%v)", len(r.Answer), r.Truncated)
	}
	qs := up.queries()
	if len(qs) != 2 || qs[0].proto != "udp" || qs[1].proto != "tcp" {
		t.Fatalf("upstream saw %v, want udp then tcp", qs)
	}
}

func TestForceTCP(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	cfg.ForceTCP = true
	s := startServer(t, cfg)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	ask(t, s, "udp", "www.example.", dns.TypeAAAA, 0)
	for _, q := range up.queries() {
		if q.proto != "tcp" {
			t.Fatalf("upstream query over %s with --force-tcp", q.proto)
		}
	}
}

func TestTruncationToClientSize(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil)) // big.example. TXT is ~1300 bytes
	s := startServer(t, testConfig(up.addr))
	for _, tc := range []struct {
		proto string
		edns  uint16
		tc    bool
	}{
		{"udp", 0, true},    // 512 without EDNS0
		{"udp", 1232, true}, // still too big
		{"udp", 4096, false},
		{"tcp", 0, false},
		{"udp", 0, true}, // again, now from the cache
	} {
		r := ask(t, s, tc.proto, "big.example.", dns.TypeTXT, tc.edns)
		if r.Truncated != tc.tc {
			t.Fatalf("%s bufsize %d: TC=%v, want %v", tc.proto, tc.edns, r.Truncated, tc.tc)
		}
		size := r.Len()
		limit := 512
		if tc.edns > 0 {
			limit = int(tc.edns)
		}
		if tc.proto == "udp" && size > limit {
			t.Fatalf("udp reply of %d bytes exceeds the client's %d", size, limit)
		}
		if !tc.tc && len(r.Answer) != 6 {
			t.Fatalf("%s bufsize %d: %d records, want 6", tc.proto, tc.edns, len(r.Answer))
		}
		if tc.edns > 0 && r.IsEdns0() == nil {
			t.Fatalf("EDNS0 query got a reply without OPT")
		}
	}
}

func TestFailoverAndHealth(t *testing.T) {
	dead := newFakeUpstream(t, func(seen, *dns.Msg) *dns.Msg { return nil })
	live := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(dead.addr, live.addr)
	cfg.Timeout = 200 * time.Millisecond
	cfg.TotalTimeout = 1500 * time.Millisecond
	s := startServer(t, cfg)
	for i := range 3 {
		start := time.Now()
		r := ask(t, s, "udp", fmt.Sprintf("f%d.example.", i), dns.TypeA, 0)
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		if took := time.Since(start); took > 600*time.Millisecond {
			t.Fatalf("failover took %v", took)
		}
	}
	// After three timeouts the dead upstream is skipped: answers are fast.
	if s.fwd.Healthy() != 1 {
		t.Fatalf("%d healthy upstreams, want 1", s.fwd.Healthy())
	}
	deadBefore := len(dead.queries())
	start := time.Now()
	ask(t, s, "udp", "fast.example.", dns.TypeA, 0)
	if took := time.Since(start); took >= cfg.Timeout {
		t.Fatalf("unhealthy upstream not skipped: %v", took)
	}
	if len(dead.queries()) != deadBefore {
		t.Fatal("query sent to the unhealthy upstream")
	}
	// Probe back: once the dead one answers again and the probe interval
	// passed, traffic triggers a probe and it becomes healthy.
	dead.setAnswer(zoneAnswer(t, 300, nil))
	for _, u := range s.fwd.ups {
		if u.downUntil.Load() != 0 {
			u.downUntil.Store(time.Now().UnixNano())
		}
	}
	ask(t, s, "udp", "trigger.example.", dns.TypeA, 0)
	deadline := time.Now().Add(2 * time.Second)
	for s.fwd.Healthy() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.fwd.Healthy() != 2 {
		t.Fatal("recovered upstream not probed back")
	}
}

func TestServfailOnSilenceWhileOthersFlow(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	s := startServer(t, cfg)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0) // cached
	up.setAnswer(func(s seen, req *dns.Msg) *dns.Msg {
		if strings.HasPrefix(s.name, "slow") {
			return nil
		}
		return zoneAnswer(t, 300, nil)(s, req)
	})
	done := make(chan time.Duration)
	start := time.Now()
	go func() {
		r := ask(t, s, "udp", "slow.example.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("silent upstream gave %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		done <- time.Since(start)
	}()
	// Meanwhile cached and uncached queries keep flowing.
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		t0 := time.Now()
		ask(t, s, "udp", "www.example.", dns.TypeA, 0)
		ask(t, s, "tcp", fmt.Sprintf("other%d.example.", i), dns.TypeA, 0)
		if d := time.Since(t0); d > 300*time.Millisecond {
			t.Fatalf("other queries stalled %v behind a silent name", d)
		}
	}
	took := <-done
	if took < cfg.TotalTimeout-100*time.Millisecond || took > cfg.TotalTimeout+500*time.Millisecond {
		t.Fatalf("SERVFAIL after %v, want about the %v budget", took, cfg.TotalTimeout)
	}
	// The failure is cached briefly: asking again is immediate.
	t0 := time.Now()
	if r := ask(t, s, "udp", "slow.example.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure || time.Since(t0) > 300*time.Millisecond {
		t.Fatalf("cached SERVFAIL: %s after %v", dns.RcodeToString[r.Rcode], time.Since(t0))
	}
}

func TestServeStale(t *testing.T) {
	for _, stale := range []bool{true, false} {
		t.Run(fmt.Sprintf("serve-stale=%v", stale), func(t *testing.T) {
			up := newFakeUpstream(t, zoneAnswer(t, 60, nil))
			cfg := testConfig(up.addr)
			cfg.ServeStale = stale
			clk := newFakeClock()
			s := startServer(t, cfg, func(s *Server) { s.setClock(clk.now) })
			if r := ask(t, s, "udp", "www.example.", dns.TypeA, 0); len(r.Answer) != 1 {
				t.Fatalf("first answer %v", r)
			}
			clk.advance(2 * time.Minute)
			up.setAnswer(func(seen, *dns.Msg) *dns.Msg { return nil })
			r := ask(t, s, "udp", "www.example.", dns.TypeA, 0)
			if !stale {
				if r.Rcode != dns.RcodeServerFailure {
					t.Fatalf("without serve-stale: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
				}
				return
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != staleTTL {
				t.Fatalf("stale answer %v, want the old record with TTL %d", r, staleTTL)
			}
			// Within the recheck window the stale answer comes at once.
			before := len(up.queries())
			t0 := time.Now()
			r = ask(t, s, "udp", "www.example.", dns.TypeA, 0)
			if len(r.Answer) != 1 || time.Since(t0) > 300*time.Millisecond || len(up.queries()) != before {
				t.Fatalf("second stale answer: %v after %v (%d upstream queries, %d before: %v)", r.Answer, time.Since(t0), len(up.queries()), before, up.queries())
			}
		})
	}
}

func TestPrefetch(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 100, nil))
	cfg := testConfig(up.addr)
	cfg.PrefetchHits = 2
	clk := newFakeClock()
	s := startServer(t, cfg, func(s *Server) { s.setClock(clk.now) })
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	if n := len(up.queries()); n != 1 {
		t.Fatalf("%d upstream queries before expiry nears", n)
	}
	clk.advance(95 * time.Second) // 5% of the TTL left
	r := ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	if r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("TTL %d, want 5 (served from cache while prefetching)", r.Answer[0].Header().Ttl)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(up.queries()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(up.queries()); n != 2 {
		t.Fatalf("%d upstream queries, want exactly one prefetch", n)
	}
	clk.advance(10 * time.Second) // the old entry would have expired
	r = ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	if r.Answer[0].Header().Ttl != 90 || len(up.queries()) != 2 {
		t.Fatalf("after expiry: TTL %d with %d upstream queries, want the prefetched entry (TTL 90)", r.Answer[0].Header().Ttl, len(up.queries()))
	}
}
