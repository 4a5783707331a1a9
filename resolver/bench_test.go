package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkAnswerCacheHit measures the in-process cost of answering a
// cache hit (parse, key, lookup, copy and patch), without the socket.
func BenchmarkAnswerCacheHit(b *testing.B) {
	up := newFakeUpstream(b, zoneAnswer(b, 3600, nil))
	s, err := New(testConfig(up.addr), nil)
	if err != nil {
		b.Fatal(err)
	}
	pkt := packQuery(b, "WWW.example.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	sc := newScratch()
	if _, act := s.answerFast(pkt, sc, false); act == actResolve {
		s.answerSlow(sc, false)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, act := s.answerFast(pkt, sc, false); act != actReply {
			b.Fatal("not a hit")
		}
	}
}

// BenchmarkNewItem measures turning an upstream reply into a cache entry
// (the miss path's parsing).
func BenchmarkNewItem(b *testing.B) {
	reply := upstreamReply(b, "www.example.", dns.TypeA, 0,
		[]string{"www.example. 60 IN CNAME a.example.", "a.example. 60 IN A 192.0.2.1"}, nil)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newItem(reply, now, testPolicy); err != nil {
			b.Fatal(err)
		}
	}
}
