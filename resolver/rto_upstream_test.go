package resolver

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rtoConfig is testConfig with the production timeouts: the default
// 1 s ceiling and 150 ms floor, 3 s budget.
func rtoConfig(up string) Config {
	c := testConfig(up)
	c.Timeout, c.MinTimeout, c.TotalTimeout = time.Second, DefaultMinTimeout, 3*time.Second
	return c
}

// upstreamCounters reads one upstream's retransmits and "timeout" errors.
func upstreamCounters(s *Server) (retransmits, timeouts float64) {
	u := s.fwd.ups[0]
	return u.m.retransmits.value(), u.m.errs.snapshot()["timeout"]
}

// TestLostQueryRetriedAfterLearnedRTT: an upstream that drops the first
// query of every name ("lost*") is asked again after its learned per-try
// timeout (about 150 ms above a loopback RTT), not after --timeout (1 s);
// before any answer the initial 400 ms applies. The lost tries are counted
// as retransmits and timeouts, but the upstream, which answered the
// retries, stays healthy. Negative control: with tryTimeout returning
// f.maxTimeout (the fixed 1 s of before) both cases failed, the lookup
// taking 1.002 s.
func TestLostQueryRetriedAfterLearnedRTT(t *testing.T) {
	for _, tt := range []struct {
		name     string
		warm     int // names answered at once before the lost ones
		min, max time.Duration
	}{
		{"learned", 5, 140 * time.Millisecond, 300 * time.Millisecond},
		{"before any answer: the initial timeout", 0, 390 * time.Millisecond, 600 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			dropped := map[string]bool{}
			answer := zoneAnswer(t, 300, nil)
			up := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(s.name, "lost") && !dropped[s.name] {
					dropped[s.name] = true
					return nil
				}
				return answer(s, req)
			})
			s := startServer(t, rtoConfig(up.addr))
			for i := range tt.warm {
				ask(t, s, "udp", fmt.Sprintf("warm%d.example.", i), dns.TypeA, 0)
			}
			const lost = 3
			for i := range lost {
				if tt.warm == 0 && i > 0 {
					break // only the first lookup runs before any answer
				}
				start := time.Now()
				r := ask(t, s, "udp", fmt.Sprintf("lost%d.example.", i), dns.TypeA, 0)
				took := time.Since(start)
				if r.Rcode != dns.RcodeNameError {
					t.Fatalf("lost%d: rcode %s", i, dns.RcodeToString[r.Rcode])
				}
				if took < tt.min || took > tt.max {
					t.Fatalf("lost%d answered after %v, want %v..%v", i, took, tt.min, tt.max)
				}
			}
			n := float64(min(lost, max(tt.warm, 1)))
			if re, to := upstreamCounters(s); re != n || to != n {
				t.Fatalf("retransmits %v, timeouts %v; want %v each (one lost query per name)", re, to, n)
			}
			if s.fwd.Healthy() != 1 || s.fwd.ups[0].fails.Load() != 0 {
				t.Fatalf("healthy %d, consecutive fails %d: a lost packet counted against an upstream that answered the retry", s.fwd.Healthy(), s.fwd.ups[0].fails.Load())
			}
		})
	}
}

// TestSlowSteadyUpstreamNotRetransmitted: an upstream whose answers come
// in a steady 300 ms after it was fast. The first burst of slow queries
// outlives the floor-sized timeout learned from the fast answers and is
// retransmitted once each, but the late answers to the first tries win,
// count as answers (no timeout, the upstream stays healthy) and teach the
// estimator: afterwards every query is sent exactly once.
// Negative controls: sampling only tries that had not timed out (TCP's
// form of Karn's rule, which these unambiguous answers do not need) left
// the timeout at ~150 ms and every later query was sent twice; counting
// each retransmit as a failure (markFail in exState.timeout, as before)
// marked the upstream down during the burst; counting a retransmission
// sent after a try the upstream answered as a timeout (settle without
// answeredEarlier) counted 10 timeouts once the second try waited as long
// as the first.
func TestSlowSteadyUpstreamNotRetransmitted(t *testing.T) {
	const delay = 300 * time.Millisecond
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	s := startServer(t, rtoConfig(up.addr))
	for i := range 5 {
		ask(t, s, "udp", fmt.Sprintf("fast%d.example.", i), dns.TypeA, 0)
	}
	up.setAnswer(zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: delay}))
	// Health is watched during the burst: the answers that end it would
	// mark the upstream healthy again.
	stop, downSeen := make(chan struct{}), make(chan bool)
	go func() {
		down := false
		for {
			select {
			case <-stop:
				downSeen <- down
				return
			case <-time.After(2 * time.Millisecond):
				down = down || s.fwd.Healthy() == 0
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { ask(t, s, "udp", fmt.Sprintf("burst%d.example.", i), dns.TypeA, 0) })
	}
	wg.Wait()
	close(stop)
	if <-downSeen || s.fwd.Healthy() != 1 {
		t.Fatal("a slow upstream that answered every query was marked down")
	}
	if _, to := upstreamCounters(s); to != 0 {
		t.Fatalf("%v timeouts counted for an upstream that answered every try", to)
	}
	// Three more slow answers settle the estimate (in one run of the whole
	// package on a loaded machine, the first lookup after the burst was
	// still retransmitted once); then every query goes out once.
	for i := range 3 {
		ask(t, s, "udp", fmt.Sprintf("settle%d.example.", i), dns.TypeA, 0)
	}
	before := len(up.queries())
	for i := range 5 {
		start := time.Now()
		r := ask(t, s, "udp", fmt.Sprintf("steady%d.example.", i), dns.TypeA, 0)
		if took := time.Since(start); r.Rcode != dns.RcodeNameError || took < delay || took > delay+200*time.Millisecond {
			t.Fatalf("steady%d: %s after %v", i, dns.RcodeToString[r.Rcode], took)
		}
	}
	if got := len(up.queries()) - before; got != 5 {
		t.Fatalf("5 lookups of a steady 300 ms upstream sent %d queries; want 5 (RTO %v)", got, s.fwd.tryTimeout(s.fwd.ups[0], 0))
	}
}

// TestTriesBackOff: an upstream that never answers is asked at the
// learned timeout, four times, then at twice it, four times it, capped
// by --timeout: after the fourth retry the gaps between the queries it
// receives double.
func TestTriesBackOff(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := rtoConfig(up.addr)
	cfg.TotalTimeout = 2 * time.Second
	s := startServer(t, cfg)
	ask(t, s, "udp", "warm.example.", dns.TypeA, 0)
	up.setAnswer(func(seen, *dns.Msg) *dns.Msg { return nil })
	if r := ask(t, s, "udp", "silent.example.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("silent upstream: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	var at []time.Time
	for _, q := range up.queries() {
		if q.name == "silent.example." {
			at = append(at, q.at)
		}
	}
	// Tries at 0, ~150, ~300, ~450, ~600, ~900, ~1500 ms; the next would
	// be at ~2500, after the 2 s budget.
	ms := time.Millisecond
	want := []time.Duration{150 * ms, 150 * ms, 150 * ms, 150 * ms, 300 * ms, 600 * ms}
	if len(at) != len(want)+1 {
		t.Fatalf("%d tries, want %d", len(at), len(want)+1)
	}
	for i, w := range want {
		if gap := at[i+1].Sub(at[i]); gap < w-10*time.Millisecond || gap > w+80*time.Millisecond {
			t.Fatalf("gap %d: %v, want about %v", i, gap, w)
		}
	}
	// Six tries outlived their timeouts; the seventh ran into the budget.
	// All seven got nothing: seven timeouts, and the upstream is down.
	if re, to := upstreamCounters(s); re != 6 || to != 7 {
		t.Fatalf("retransmits %v, timeouts %v; want 6 and 7", re, to)
	}
	if s.fwd.Healthy() != 0 {
		t.Fatal("an upstream that answered none of seven tries is still healthy")
	}
}
