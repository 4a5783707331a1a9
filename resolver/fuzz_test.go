package resolver

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fuzzSeeds are queries the fuzzers start from; crashers found later are
// kept here as named cases.
func fuzzQuerySeeds(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"a":          packQuery(t, "www.example.", dns.TypeA, nil),
		"aaaa edns":  packQuery(t, "WWW.example.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(4096, true) }),
		"txt big":    packQuery(t, "big.example.", dns.TypeTXT, nil),
		"nx":         packQuery(t, "nx.example.", dns.TypeMX, func(m *dns.Msg) { m.CheckingDisabled = true }),
		"any":        packQuery(t, "www.example.", dns.TypeANY, nil),
		"axfr":       packQuery(t, "example.", dns.TypeAXFR, nil),
		"chaos":      packQuery(t, "id.server.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }),
		"two opt":    append(packQuery(t, "www.example.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) }), 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0),
		"header":     make([]byte, headerLen),
		"root":       packQuery(t, ".", dns.TypeNS, nil),
		"ar garbage": {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 1, 0, 1, 0xC0, 0x0C},
	}
}

func FuzzServeDNS(f *testing.F) {
	for _, b := range fuzzQuerySeeds(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	// One server for all executions: a real upstream on loopback that
	// answers at once (silence would make every execution take the budget).
	up := newFakeUpstream(f, zoneAnswer(f, 300, nil))
	cfg := testConfig(up.addr)
	// miekg's server ignores some odd queries: keep those executions short.
	cfg.Timeout, cfg.TotalTimeout = 50*time.Millisecond, 100*time.Millisecond
	s, err := New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		sc := newScratch()
		reply, act := s.answerFast(pkt, sc, tcp)
		if act == actResolve {
			reply = s.answerSlow(sc, tcp)
			act = actReply
		}
		if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
			if act != actDrop {
				t.Fatalf("replied to a packet with no usable header")
			}
			return
		}
		if act != actReply {
			t.Fatalf("no reply to a packet with a valid header")
		}
		if len(reply) < headerLen {
			t.Fatalf("reply of %d bytes", len(reply))
		}
		if reply[0] != pkt[0] || reply[1] != pkt[1] || reply[2]&0x80 == 0 {
			t.Fatalf("reply header % x for query % x", reply[:4], pkt[:4])
		}
		m := new(dns.Msg)
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply does not unpack: %v", err)
		}
		var q query
		if parseQuery(pkt, &q) == nil && !tcp && len(reply) > q.udpSize {
			t.Fatalf("udp reply %d bytes > client size %d", len(reply), q.udpSize)
		}
		if q.questionOK && binary.BigEndian.Uint16(reply[4:]) == 1 {
			if string(reply[headerLen:q.qEnd]) != string(pkt[headerLen:q.qEnd]) {
				t.Fatalf("question not echoed byte for byte")
			}
		}
	})
}

func FuzzCache(f *testing.F) {
	soa := []string{"example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 60"}
	f.Add(upstreamReply(f, "www.example.", dns.TypeA, 0, []string{"www.example. 60 IN A 192.0.2.1"}, nil), uint16(512), int64(10))
	f.Add(upstreamReply(f, "nx.example.", dns.TypeA, 3, nil, soa), uint16(0), int64(100))
	f.Add(upstreamReply(f, "www.example.", dns.TypeA, 0, []string{"www.example. 60 IN CNAME a.example.", "a.example. 5 IN A 192.0.2.1"}, soa), uint16(4096), int64(3))
	f.Add(upstreamReply(f, "big.example.", dns.TypeTXT, 0, []string{`big.example. 60 IN TXT "` + string(make([]byte, 250)) + `"`}, nil), uint16(100), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, size uint16, age int64) {
		it, err := newItem(b, time.Unix(1000, 0), testPolicy)
		if err != nil {
			return
		}
		if it.ttl > testPolicy.max && it.rcode == rcodeSuccess {
			t.Fatalf("lifetime %d above max", it.ttl)
		}
		for _, ttl := range it.recordTTLs() {
			if ttl > testPolicy.max {
				t.Fatalf("ttl %d above max", ttl)
			}
		}
		c := NewCache(4, 1<<16, time.Hour)
		// The entry's own key: its question and the DO/CD byte.
		qend, err := skipName(it.wire, headerLen)
		if err != nil || qend+4 > len(it.wire) {
			t.Fatalf("cached entry without a question: %v", err)
		}
		key := append(append([]byte(nil), it.wire[headerLen:qend+4]...), byte(size)&3)
		c.set(key, it)
		got, _ := c.lookup(key, time.Unix(1000+age%100000, 0))
		if got == nil && age%100000 < int64(it.ttl) && age >= 0 {
			t.Fatal("fresh entry missing")
		}
		if got == nil {
			return
		}
		// Answer a query for the cached question with the entry.
		pkt := append([]byte{0xAB, 0xCD, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, it.wire[headerLen:qend+4]...)
		var q query
		if err := parseQuery(pkt, &q); err != nil {
			return // e.g. a compressed question name in the reply
		}
		if size > 0 {
			q.udpSize = int(size)
		}
		out := got.appendReply(nil, &q, time.Unix(1000+age%100000, 0), 0, q.udpSize)
		if out[0] != 0xAB || out[1] != 0xCD {
			t.Fatal("ID not patched")
		}
		if len(out) > max(q.udpSize, q.qEnd) {
			t.Fatalf("reply %d bytes > %d", len(out), q.udpSize)
		}
		if got.wire[0] == 0xAB && got.wire[1] == 0xCD && b[0] != 0xAB {
			t.Fatal("replying modified the cached entry")
		}
	})
}
