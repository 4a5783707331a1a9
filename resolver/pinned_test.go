package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestPinnedPoolSocketsDropped: behind a Service IP, each pooled socket's
// 5-tuple is pinned by its conntrack entry to the CoreDNS endpoint it was
// first balanced to; when that endpoint goes, every query on those sockets
// is lost. Emulated here: after a warm-up that fills the pool, the
// upstream ignores every query from a source port it has already seen.
// Each lookup must then lose at most one try (about 150 ms), and only the
// first lookup may lose one at all: its timeout empties the pool and its
// retry leaves from a new socket. Negative control: without dropIdle in
// exState.timeout, lookups after the first took pooled pinned sockets
// again and lost a try each.
func TestPinnedPoolSocketsDropped(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := rtoConfig(up.addr)
	cfg.UDPSocketReuse = 8
	s := startServer(t, cfg)
	// More than recentPorts queries, so the oldest pooled sockets may be
	// taken again (a port is not reused within 64 queries).
	for i := range recentPorts + 16 {
		ask(t, s, "udp", fmt.Sprintf("warm%d.example.", i), dns.TypeA, 0)
	}
	pinned := map[uint16]bool{}
	for _, q := range up.queries() {
		pinned[q.src.Port()] = true
	}
	answer := zoneAnswer(t, 300, nil)
	up.setAnswer(func(q seen, req *dns.Msg) *dns.Msg {
		if pinned[q.src.Port()] {
			return nil // the endpoint this tuple is pinned to is gone
		}
		return answer(q, req)
	})
	slow := 0
	for i := range 8 {
		start := time.Now()
		r := ask(t, s, "udp", fmt.Sprintf("after%d.example.", i), dns.TypeA, 0)
		took := time.Since(start)
		if r.Rcode == dns.RcodeServerFailure || took > 400*time.Millisecond {
			t.Errorf("after%d: %s after %v; want an answer within one lost try", i, dns.RcodeToString[r.Rcode], took)
		}
		if took > 100*time.Millisecond {
			slow++
		}
	}
	if re, _ := upstreamCounters(s); slow > 1 || re > 1 {
		t.Errorf("%d lookups lost a try (%v retransmits); want at most the first: its timeout drops the pooled sockets", slow, re)
	}
}
