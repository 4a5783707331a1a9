package resolver

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Issue 13: what unbound gets right on the wire, checked against real
// in-process upstreams that record every query's source port.

func TestAAndAAAANeverShareAPort(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			up := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
				m := new(dns.Msg).SetReply(req)
				m.Rcode = dns.RcodeNameError
				return m
			})
			cfg := testConfig(up.addr)
			cfg.ParallelAAAA = parallel
			s := startServer(t, cfg)
			const names = 20
			for i := range names {
				var wg sync.WaitGroup
				for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
					wg.Go(func() { ask(t, s, "udp", fmt.Sprintf("n%d.example.", i), qt, 0) })
				}
				wg.Wait()
			}
			qs := up.queries()
			if len(qs) != 2*names {
				t.Fatalf("%d upstream queries, want %d", len(qs), 2*names)
			}
			byName := map[string][]uint16{}
			ports := map[uint16]int{}
			for _, q := range qs {
				byName[q.name] = append(byName[q.name], q.src.Port())
				ports[q.src.Port()]++
			}
			for n, p := range byName {
				if len(p) == 2 && p[0] == p[1] {
					t.Fatalf("%s: A and AAAA both from port %d", n, p[0])
				}
			}
			// 40 queries, fewer than recentPorts: no port may repeat.
			if len(ports) != len(qs) {
				t.Fatalf("%d queries from %d ports", len(qs), len(ports))
			}
		})
	}
}

func TestPooledSocketsNeverRepeatWithin64Queries(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	cfg.UDPSocketReuse = 4
	s := startServer(t, cfg)
	const n = 300
	for i := range n {
		ask(t, s, "udp", fmt.Sprintf("r%d.example.", i), dns.TypeA, 0)
	}
	qs := up.queries()
	uses := map[uint16]int{}
	last := map[uint16]int{}
	for i, q := range qs {
		p := q.src.Port()
		if j, ok := last[p]; ok && i-j < recentPorts {
			t.Fatalf("port %d used by queries %d and %d, want at least %d apart", p, j, i, recentPorts)
		}
		last[p] = i
		uses[p]++
	}
	for p, k := range uses {
		if k > 4 {
			t.Fatalf("port %d carried %d queries, cap 4", p, k)
		}
	}
	if len(uses) >= n {
		t.Fatalf("%d queries over %d ports: pooled sockets never reused", n, len(uses))
	}
}

func TestSlowUpstreamLateReplyAccepted(t *testing.T) {
	// Always 1.5 s late with the default 1 s per try and 3 s budget: the
	// first try's reply arrives while the second try is out.
	up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: 1500 * time.Millisecond}))
	cfg := testConfig(up.addr)
	cfg.Timeout = time.Second
	cfg.TotalTimeout = 3 * time.Second
	s := startServer(t, cfg)
	start := time.Now()
	r := ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	took := time.Since(start)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("slow upstream: %s, %d answers, want the answer", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if took < 1400*time.Millisecond || took > 2200*time.Millisecond {
		t.Fatalf("answered after %v, want about 1.5 s (the first try's late reply)", took)
	}
	if n := len(up.queries()); n < 2 {
		t.Fatalf("%d upstream queries, want a second try sent while the first kept listening", n)
	}
}

func rcodeUpstream(t *testing.T, rcode int) *fakeUpstream {
	return newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		m.Rcode = rcode
		return m
	})
}

func TestUnusableUpstreamRcodes(t *testing.T) {
	for _, rc := range []int{dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeServerFailure} {
		t.Run(dns.RcodeToString[rc], func(t *testing.T) {
			bad := rcodeUpstream(t, rc)
			good := newFakeUpstream(t, zoneAnswer(t, 300, nil))
			s := startServer(t, testConfig(bad.addr, good.addr))
			if r := ask(t, s, "udp", "www.example.", dns.TypeA, 1232); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("with a good second upstream: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
			}
			// Alone, the bad upstream's rcode never reaches the client.
			alone := startServer(t, testConfig(bad.addr))
			start := time.Now()
			r := ask(t, alone, "udp", "www.example.", dns.TypeA, 1232)
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("only upstream answers %s: client got %s, want SERVFAIL", dns.RcodeToString[rc], dns.RcodeToString[r.Rcode])
			}
			if r.IsEdns0() == nil {
				t.Fatal("SERVFAIL to an EDNS query without OPT")
			}
			if took := time.Since(start); took > 250*time.Millisecond {
				t.Fatalf("SERVFAIL after %v: an answer, even a useless one, needs no timeout", took)
			}
			if rc == dns.RcodeFormatError {
				// Asked again without EDNS before giving up.
				var plain int
				for _, q := range bad.queries() {
					_ = q
					plain++
				}
				if plain < 3 {
					t.Fatalf("FORMERR upstream asked %d times, want the retry without EDNS", plain)
				}
			}
		})
	}
}

func TestTruncatedOverTCPIsAnError(t *testing.T) {
	tc := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		m.Truncated = true
		return m
	})
	good := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(tc.addr, good.addr)
	cfg.ForceTCP = true
	s := startServer(t, cfg)
	r := ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Truncated {
		t.Fatalf("TC over TCP not failed over: %v", r)
	}
	if len(good.queries()) != 1 {
		t.Fatalf("second upstream asked %d times", len(good.queries()))
	}
}

func TestErrorReplyCarriesOPT(t *testing.T) {
	s := startServer(t, testConfig("127.0.0.1:9"))
	opt := []byte{0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0}
	q := []byte{3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
	for _, tc := range []struct {
		name string
		qd   int
	}{{"QDCOUNT=0", 0}, {"QDCOUNT=2", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := []byte{0xAB, 0xCD, 1, 0, 0, byte(tc.qd), 0, 0, 0, 0, 0, 1}
			for range tc.qd {
				pkt = append(pkt, q...)
			}
			pkt = append(pkt, opt...)
			b := rawExchange(t, udpAddr(s), pkt, 2*time.Second)
			if b == nil {
				t.Fatal("no reply")
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatalf("reply %x: %v", b, err)
			}
			if m.Rcode != dns.RcodeFormatError || m.Id != 0xABCD {
				t.Fatalf("reply %v, want FORMERR with ID abcd", m)
			}
			if m.IsEdns0() == nil || binary.BigEndian.Uint16(b[10:]) != 1 {
				t.Fatalf("FORMERR to a query with OPT carries no OPT: %x", b)
			}
		})
	}
}

func TestADBitOnlyForADOrDO(t *testing.T) {
	up := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
		m := zoneAnswer(t, 300, nil)(s, req)
		m.AuthenticatedData = true
		return m
	})
	s := startServer(t, testConfig(up.addr))
	for _, tc := range []struct {
		name   string
		ad, do bool
		want   bool
	}{{"plain", false, false, false}, {"AD", true, false, true}, {"DO", false, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // miss, then hit
				m := new(dns.Msg)
				m.SetQuestion("www.example.", dns.TypeA)
				m.AuthenticatedData = tc.ad
				m.SetEdns0(1232, tc.do)
				r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, udpAddr(s).String())
				if err != nil {
					t.Fatal(err)
				}
				if r.AuthenticatedData != tc.want {
					t.Fatalf("AD=%v, want %v", r.AuthenticatedData, tc.want)
				}
			}
		})
	}
}

// packed builds a reply's wire bytes, uncompressed unless compress.
func packed(t *testing.T, m *dns.Msg, compress bool) []byte {
	t.Helper()
	m.Compress = compress
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTruncationKeepsWholeRRsets(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	var pq query
	qb, _ := q.Pack()
	if err := parseQuery(qb, &pq); err != nil {
		t.Fatal(err)
	}
	mk := func(an, ns, ex []dns.RR, rcode int) *item {
		m := new(dns.Msg).SetReply(q)
		m.Answer, m.Ns, m.Extra, m.Rcode = an, ns, ex, rcode
		it, err := newItem(packed(t, m, true), time.Now(), ttlPolicy{max: 3600, negMax: 300})
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	var as, glue []dns.RR
	for i := range 4 {
		as = append(as, rr(t, fmt.Sprintf("www.example. 300 IN A 192.0.2.%d", i+1)))
	}
	for i := range 30 {
		glue = append(glue, rr(t, fmt.Sprintf("ns%d.example. 300 IN AAAA 2001:db8::%d", i, i)))
	}
	bigTXT := rr(t, "www.example. 300 IN TXT \""+strings.Repeat("x", 250)+"\" \""+strings.Repeat("y", 250)+"\"")
	cname := rr(t, "www.example. 300 IN CNAME other.example.")
	soa := rr(t, "example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 60")
	for _, tc := range []struct {
		name       string
		it         *item
		size       int
		tc         bool
		an, ns, ar int
	}{
		{"additional dropped, no TC", mk(as, nil, glue, 0), 512, false, 4, 0, 0},
		{"fits: untouched", mk(as, nil, glue[:2], 0), 512, false, 4, 0, 2},
		{"answer RRset too big: TC, whole RRsets that fit", mk([]dns.RR{cname, bigTXT, bigTXT}, nil, nil, 0), 512, true, 1, 0, 0},
		{"negative: SOA must fit", mk(nil, []dns.RR{soa}, nil, dns.RcodeNameError), 40, true, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.it.appendReply(nil, &pq, time.Now(), 0, tc.size)
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if len(b) > tc.size {
				t.Fatalf("%d bytes > %d", len(b), tc.size)
			}
			if m.Truncated != tc.tc || len(m.Answer) != tc.an || len(m.Ns) != tc.ns || len(m.Extra) != tc.ar {
				t.Fatalf("TC=%v an=%d ns=%d ar=%d, want TC=%v %d/%d/%d", m.Truncated, len(m.Answer), len(m.Ns), len(m.Extra), tc.tc, tc.an, tc.ns, tc.ar)
			}
		})
	}
}

func TestUncompressedUpstreamRepackedCompressed(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	m := new(dns.Msg).SetReply(q)
	for i := range 20 {
		m.Answer = append(m.Answer, rr(t, fmt.Sprintf("www.example. 300 IN A 192.0.2.%d", i+1)))
	}
	plain := packed(t, m, false)
	want := packed(t, m, true)
	it, err := newItem(plain, time.Now(), ttlPolicy{max: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if len(it.wire) != len(want) {
		t.Fatalf("stored %d bytes from a %d-byte uncompressed reply, want %d (compressed)", len(it.wire), len(plain), len(want))
	}
	if len(want) > 512 || len(plain) <= 512 {
		t.Fatalf("test data: plain %d, compressed %d", len(plain), len(want))
	}
}

func TestTCPUpstreamConnectionsReused(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeA: 20 * time.Millisecond}))
	cfg := testConfig(up.addr)
	cfg.ForceTCP = true
	cfg.TotalTimeout = 3 * time.Second
	cfg.Timeout = time.Second
	s := startServer(t, cfg)
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if r := ask(t, s, "udp", fmt.Sprintf("t%d.example.", i), dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
				t.Errorf("t%d: %s", i, dns.RcodeToString[r.Rcode])
			}
		})
		if i%3 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	wg.Wait()
	conns := map[uint16]bool{}
	for _, q := range up.queries()[:n] {
		if q.proto != "tcp" {
			t.Fatalf("query over %s with force-tcp", q.proto)
		}
		conns[q.src.Port()] = true
	}
	if len(conns) > tcpMaxConns {
		t.Fatalf("%d misses used %d TCP connections, want at most %d", n, len(conns), tcpMaxConns)
	}
	if got := s.fwd.ups[0].tcp.size(); got == 0 {
		t.Fatal("no pooled connection kept for reuse")
	}
	// The connection fails: the next query reconnects.
	s.fwd.ups[0].tcp.closeAll()
	if r := ask(t, s, "udp", "again.example.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after reconnect: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestClientTCPPipelinedOutOfOrder(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, map[uint16]time.Duration{dns.TypeAAAA: 500 * time.Millisecond}))
	s := startServer(t, testConfig(up.addr))
	ask(t, s, "udp", "www.example.", dns.TypeA, 0) // cached
	c, err := net.Dial("tcp", tcpAddr(s).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(id uint16, qt uint16) {
		m := new(dns.Msg)
		m.SetQuestion("www.example.", qt)
		m.Id = id
		b, _ := m.Pack()
		c.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...))
	}
	send(1, dns.TypeAAAA) // slow miss
	send(2, dns.TypeA)    // hit
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	var order []uint16
	for range 2 {
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		order = append(order, binary.BigEndian.Uint16(b))
	}
	if order[0] != 2 || order[1] != 1 {
		t.Fatalf("reply order %v, want the cached answer (2) before the slow miss (1)", order)
	}
}

func TestServeStaleWithinClientTimer(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cfg := testConfig(up.addr)
	cfg.ServeStale = true
	cfg.Timeout = time.Second
	cfg.TotalTimeout = 3 * time.Second
	clk := newFakeClock()
	s := startServer(t, cfg, func(s *Server) { s.setClock(clk.now) })
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	clk.advance(2 * time.Minute)
	up.setAnswer(func(seen, *dns.Msg) *dns.Msg { return nil }) // down
	start := time.Now()
	r := ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	took := time.Since(start)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != staleTTL {
		t.Fatalf("stale answer %v", r)
	}
	if took < staleAfter-100*time.Millisecond || took > staleAfter+300*time.Millisecond {
		t.Fatalf("stale answer after %v, want at the %v client response timer", took, staleAfter)
	}
	// Refusing upstream: stale at once, no timer needed.
	up.setAnswer(func(s seen, req *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(req, dns.RcodeRefused) })
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	time.Sleep(3500 * time.Millisecond) // the first resolution ends its budget
	clk.advance(time.Minute)
	start = time.Now()
	r = ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	if len(r.Answer) != 1 || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("refused upstream: %v after %v, want the stale answer at once", r, time.Since(start))
	}
}

func TestPrefetchCountsAgainstMaxInflight(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 100, nil))
	cfg := testConfig(up.addr)
	cfg.PrefetchHits = 1
	cfg.MaxInflight = 1
	clk := newFakeClock()
	s := startServer(t, cfg, func(s *Server) { s.setClock(clk.now) })
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	clk.advance(95 * time.Second)
	s.inflight.Add(1) // the one allowed resolution is busy
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	time.Sleep(100 * time.Millisecond)
	if n := len(up.queries()); n != 1 {
		t.Fatalf("%d upstream queries: prefetch ran past --max-inflight", n)
	}
	s.inflight.Add(-1)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	deadline := time.Now().Add(2 * time.Second)
	for len(up.queries()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(up.queries()); n != 2 {
		t.Fatalf("%d upstream queries, want the prefetch once a slot is free", n)
	}
}
