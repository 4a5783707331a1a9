package resolver

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var testPolicy = ttlPolicy{min: 0, max: 3600, negMax: 300, servfailTTL: 5}

// upstreamReply packs a reply to name/qtype with the given records and
// rcode, plus an OPT record like real upstreams send.
func upstreamReply(t testing.TB, name string, qtype uint16, rcode int, answer, ns []string) []byte {
	t.Helper()
	q := new(dns.Msg).SetQuestion(name, qtype)
	m := new(dns.Msg).SetReply(q)
	m.Rcode = rcode
	for _, s := range answer {
		m.Answer = append(m.Answer, rr(t, s))
	}
	for _, s := range ns {
		m.Ns = append(m.Ns, rr(t, s))
	}
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientQuery packs a client query and parses it as the server would.
func clientQuery(t testing.TB, name string, qtype uint16, edns uint16, do bool) *query {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, do)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	q := new(query)
	if err := parseQuery(b, q); err != nil {
		t.Fatal(err)
	}
	return q
}

func keyOf(q *query) []byte { return appendKey(nil, q.qname(), q.qtype, q.qclass, q.do, q.cd()) }

func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return m
}

func TestCacheTTLDecay(t *testing.T) {
	clk := newFakeClock()
	c := NewCache(100, 1<<20, 0)
	c.now = clk.now
	b := upstreamReply(t, "www.example.", dns.TypeA, 0,
		[]string{"www.example. 100 IN CNAME web.example.", "web.example. 60 IN A 192.0.2.1"}, nil)
	it, err := newItem(b, clk.now(), testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if it.ttl != 60 {
		t.Fatalf("entry lifetime %d, want the smallest answer TTL 60", it.ttl)
	}
	q := clientQuery(t, "WWW.Example.", dns.TypeA, 0, false)
	c.set(keyOf(q), it)

	for _, step := range []struct {
		after      time.Duration
		fresh      bool
		cname, a   uint32
		wantAnswer bool
	}{
		{0, true, 100, 60, true},
		{25 * time.Second, true, 75, 35, true},
		{59 * time.Second, true, 41, 1, true},
		{60 * time.Second, false, 0, 0, false},
	} {
		now := clk.now().Add(step.after)
		got, fresh := c.lookup(keyOf(q), now)
		if fresh != step.fresh {
			t.Fatalf("after %v: fresh=%v, want %v", step.after, fresh, step.fresh)
		}
		if !step.wantAnswer {
			if got != nil {
				t.Fatalf("after %v: expired entry still returned without serve-stale", step.after)
			}
			continue
		}
		m := unpack(t, got.appendReply(nil, q, now, 0, 512))
		if len(m.Answer) != 2 || m.Answer[0].Header().Ttl != step.cname || m.Answer[1].Header().Ttl != step.a {
			t.Fatalf("after %v: answer %v, want TTLs %d and %d", step.after, m.Answer, step.cname, step.a)
		}
		if m.Question[0].Name != "WWW.Example." {
			t.Fatalf("question case not echoed: %q", m.Question[0].Name)
		}
	}
}

func TestTTLClamps(t *testing.T) {
	pol := ttlPolicy{min: 30, max: 600, negMax: 60}
	b := upstreamReply(t, "a.example.", dns.TypeA, 0, []string{"a.example. 5 IN A 192.0.2.1", "a.example. 86400 IN A 192.0.2.2"}, nil)
	it, err := newItem(b, time.Unix(0, 0), pol)
	if err != nil {
		t.Fatal(err)
	}
	if it.ttl != 30 || it.recordTTLs()[0] != 30 || it.recordTTLs()[1] != 600 {
		t.Fatalf("clamped TTLs %v life %d, want [30 600] life 30", it.recordTTLs(), it.ttl)
	}
	// TTL 0 without a minimum: answered but never cached.
	b = upstreamReply(t, "a.example.", dns.TypeA, 0, []string{"a.example. 0 IN A 192.0.2.1"}, nil)
	if it, _ = newItem(b, time.Unix(0, 0), testPolicy); it.ttl != 0 {
		t.Fatalf("TTL 0 answer got lifetime %d", it.ttl)
	}
}

func TestNegativeCaching(t *testing.T) {
	soa := "example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 %d"
	for _, tc := range []struct {
		name    string
		rcode   int
		soaMin  int
		noSOA   bool
		negMax  uint32
		wantTTL uint32
	}{
		{"nxdomain uses SOA minimum", dns.RcodeNameError, 60, false, 300, 60},
		{"nxdomain SOA TTL below minimum", dns.RcodeNameError, 900, false, 3600, 300},
		{"nxdomain capped", dns.RcodeNameError, 60, false, 20, 20},
		{"nodata uses SOA minimum", dns.RcodeSuccess, 45, false, 300, 45},
		{"nxdomain without SOA not cached", dns.RcodeNameError, 0, true, 300, 0},
		{"nodata without SOA not cached", dns.RcodeSuccess, 0, true, 300, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ns []string
			if !tc.noSOA {
				ns = []string{fmt.Sprintf(soa, tc.soaMin)}
			}
			b := upstreamReply(t, "nx.example.", dns.TypeA, tc.rcode, nil, ns)
			it, err := newItem(b, time.Unix(0, 0), ttlPolicy{max: 3600, negMax: tc.negMax})
			if err != nil {
				t.Fatal(err)
			}
			if it.ttl != tc.wantTTL {
				t.Fatalf("negative lifetime %d, want %d", it.ttl, tc.wantTTL)
			}
			if it.rcode != tc.rcode {
				t.Fatalf("rcode %d, want %d", it.rcode, tc.rcode)
			}
			if !tc.noSOA {
				q := clientQuery(t, "nx.example.", dns.TypeA, 0, false)
				m := unpack(t, it.appendReply(nil, q, time.Unix(10, 0), 0, 512))
				if len(m.Ns) != 1 || m.Ns[0].Header().Ttl != tc.wantTTL-10 {
					t.Fatalf("SOA in reply %v, want TTL %d", m.Ns, tc.wantTTL-10)
				}
			}
		})
	}
}

func TestCacheEvictionBound(t *testing.T) {
	clk := newFakeClock()
	const maxEntries, maxBytes = 1000, 256 << 10
	c := NewCache(maxEntries, maxBytes, 0)
	c.now = clk.now
	// A flood of unique names must not grow the cache past its bounds.
	for i := 0; i < 50000; i++ {
		name := fmt.Sprintf("host-%d.flood.example.", i)
		b := upstreamReply(t, name, dns.TypeA, 0, []string{name + " 300 IN A 192.0.2.1"}, nil)
		it, err := newItem(b, clk.now(), testPolicy)
		if err != nil {
			t.Fatal(err)
		}
		c.set(keyOf(clientQuery(t, name, dns.TypeA, 0, false)), it)
		if i%5000 == 0 && (c.Len() > maxEntries+cacheShards || c.Bytes() > maxBytes+cacheShards*4096) {
			t.Fatalf("after %d names: %d entries, %d bytes", i, c.Len(), c.Bytes())
		}
	}
	// per-shard rounding may add at most one entry per shard
	if n := c.Len(); n > maxEntries+cacheShards || n < maxEntries/4 {
		t.Fatalf("cache holds %d entries, bound %d", n, maxEntries)
	}
	if c.Bytes() > maxBytes+cacheShards*4096 {
		t.Fatalf("cache holds %d bytes, bound %d", c.Bytes(), maxBytes)
	}
	// The byte bound also holds for big entries.
	c = NewCache(100000, 64<<10, 0)
	big := make([]string, 0, 20)
	for i := 0; i < 20; i++ {
		big = append(big, fmt.Sprintf("big.example. 300 IN TXT \"%0200d\"", i))
	}
	for i := 0; i < 500; i++ {
		name := fmt.Sprintf("big%d.example.", i)
		b := upstreamReply(t, name, dns.TypeTXT, 0, big, nil)
		it, _ := newItem(b, clk.now(), testPolicy)
		c.set(keyOf(clientQuery(t, name, dns.TypeTXT, 0, false)), it)
	}
	if c.Bytes() > 64<<10+cacheShards*4096 {
		t.Fatalf("cache holds %d bytes with a 64 KiB bound", c.Bytes())
	}
}

func TestCacheKeyFolding(t *testing.T) {
	k := func(name string, qtype uint16, do, cd bool) string {
		q := clientQuery(t, name, qtype, 1232, do)
		return string(appendKey(nil, q.qname(), q.qtype, q.qclass, q.do, cd))
	}
	if k("WwW.ExAmple.", dns.TypeA, false, false) != k("www.example.", dns.TypeA, false, false) {
		t.Error("keys differ by letter case")
	}
	for name, other := range map[string]string{
		"type": k("www.example.", dns.TypeAAAA, false, false),
		"DO":   k("www.example.", dns.TypeA, true, false),
		"CD":   k("www.example.", dns.TypeA, false, true),
		"name": k("www2.example.", dns.TypeA, false, false),
	} {
		if other == k("www.example.", dns.TypeA, false, false) {
			t.Errorf("key ignores %s", name)
		}
	}
	// An entry stored under one case answers another, with that case.
	c := NewCache(10, 1<<20, 0)
	b := upstreamReply(t, "www.example.", dns.TypeA, 0, []string{"www.example. 60 IN A 192.0.2.1"}, nil)
	it, _ := newItem(b, c.now(), testPolicy)
	c.set(keyOf(clientQuery(t, "www.example.", dns.TypeA, 0, false)), it)
	q := clientQuery(t, "WWW.EXAMPLE.", dns.TypeA, 0, false)
	got, fresh := c.lookup(keyOf(q), c.now())
	if got == nil || !fresh {
		t.Fatal("upper-case query missed the lower-case entry")
	}
	if m := unpack(t, got.appendReply(nil, q, c.now(), 0, 512)); m.Question[0].Name != "WWW.EXAMPLE." {
		t.Fatalf("question %q, want the client's case", m.Question[0].Name)
	}
}

func TestStripOPTNotLast(t *testing.T) {
	// OPT in the middle of the additional section: repacked via miekg.
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	m := new(dns.Msg).SetReply(q)
	m.Answer = append(m.Answer, rr(t, "www.example. 60 IN A 192.0.2.1"))
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}}
	m.Extra = append(m.Extra, opt, rr(t, "ns.example. 60 IN A 192.0.2.53"))
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// miekg sorts OPT last when packing; move it to the front by hand.
	var rrs []rrInfo
	off, _ := skipName(b, headerLen)
	off += 4
	for i := 0; i < 3; i++ {
		var r rrInfo
		off, err = skipRR(b, off, &r)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, r)
	}
	if rrs[2].rtype == typeOPT {
		optB := append([]byte(nil), b[rrs[2].start:]...)
		other := append([]byte(nil), b[rrs[1].start:rrs[2].start]...)
		b = append(append(b[:rrs[1].start], optB...), other...)
	}
	it, err := newItem(b, time.Unix(0, 0), testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	got := unpack(t, it.wire)
	if len(got.Extra) != 1 || got.Extra[0].Header().Rrtype != dns.TypeA || len(got.Answer) != 1 {
		t.Fatalf("OPT not stripped cleanly: %v", got)
	}
}

// TestCacheBytesBoundHeap checks --cache-bytes against the heap the
// entries really take (entry, wire, map slot), for real entries of the
// kinds a cache fills with: the accounting must not undercount (or the
// bound would not bound memory) nor wildly overcount (or the cache would
// hold far fewer entries than its bound allows).
func TestCacheBytesBoundHeap(t *testing.T) {
	clk := newFakeClock()
	soa := []string{"example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 60"}
	for _, tc := range []struct {
		name  string
		reply func(i int) (string, uint16, []byte)
	}{
		{"A", func(i int) (string, uint16, []byte) {
			name := fmt.Sprintf("m%d.miss.bench.example.", i)
			return name, dns.TypeA, upstreamReply(t, name, dns.TypeA, 0, []string{name + " 300 IN A 192.0.2.1"}, nil)
		}},
		{"CNAME+AAAA", func(i int) (string, uint16, []byte) {
			name := fmt.Sprintf("www%d.example.", i)
			return name, dns.TypeAAAA, upstreamReply(t, name, dns.TypeAAAA, 0, []string{
				name + " 300 IN CNAME edge.cdn.example.", "edge.cdn.example. 300 IN AAAA 2001:db8::1"}, nil)
		}},
		{"NXDOMAIN", func(i int) (string, uint16, []byte) {
			name := fmt.Sprintf("nx%d.example.", i)
			return name, dns.TypeA, upstreamReply(t, name, dns.TypeA, dns.RcodeNameError, nil, soa)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxBytes = 1 << 20
			const n = 12000
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := NewCache(1<<20, maxBytes, 0) // only the byte bound applies
			for i := range n {
				name, qtype, b := tc.reply(i)
				it, err := newItem(b, clk.now(), testPolicy)
				if err != nil {
					t.Fatal(err)
				}
				c.set(keyOf(clientQuery(t, name, qtype, 0, false)), it)
			}
			// What stays live is the cache; the replies, queries and
			// evicted entries are garbage by now.
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := int(after.HeapAlloc) - int(before.HeapAlloc)
			t.Logf("%d entries, accounted %d bytes (%d per entry), heap %d bytes", c.Len(), c.Bytes(), c.Bytes()/max(1, c.Len()), heap)
			if c.Bytes() > maxBytes {
				t.Fatalf("cache accounts %d bytes, bound %d", c.Bytes(), maxBytes)
			}
			if c.Len() == n {
				t.Fatalf("all %d entries fit: the test does not reach the bound", n)
			}
			if heap > maxBytes*11/10 {
				t.Fatalf("cache of %d entries takes %d heap bytes, bound %d", c.Len(), heap, maxBytes)
			}
			if heap < c.Bytes()*8/10 {
				t.Fatalf("cache takes %d heap bytes but accounts %d: overcounted", heap, c.Bytes())
			}
			runtime.KeepAlive(c)
		})
	}
}

// TestCompactOwners: spelled-out owner names equal to the question become
// pointers to it, only where nothing else can break, and the records read
// back the same.
func TestCompactOwners(t *testing.T) {
	const q = "host1.svc.example."
	qlen := len(q) + 1 // wire form
	for _, tc := range []struct {
		name     string
		qtype    uint16
		answer   []string
		compress bool
		saved    int // bytes the entry's wire must lose
	}{
		{"one A", dns.TypeA, []string{q + " 300 IN A 192.0.2.1"}, false, qlen - 2},
		{"two AAAA", dns.TypeAAAA, []string{q + " 300 IN AAAA 2001:db8::1", q + " 300 IN AAAA 2001:db8::2"}, false, 2 * (qlen - 2)},
		{"already compressed", dns.TypeA, []string{q + " 300 IN A 192.0.2.1"}, true, 0},
		{"CNAME chain", dns.TypeA, []string{q + " 300 IN CNAME a.example.", "a.example. 300 IN A 192.0.2.1"}, false, 0},
		{"other owner", dns.TypeA, []string{"other.example. 300 IN A 192.0.2.1"}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg).SetReply(new(dns.Msg).SetQuestion(q, tc.qtype))
			for _, s := range tc.answer {
				m.Answer = append(m.Answer, rr(t, s))
			}
			m.Compress = tc.compress
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			it, err := newItem(b, time.Unix(0, 0), testPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(b) - len(it.wire); got != tc.saved {
				t.Fatalf("entry is %d bytes for a %d-byte reply: saved %d, want %d", len(it.wire), len(b), got, tc.saved)
			}
			if want := len(it.wire) + 2*len(m.Answer); cap(it.wire) != want {
				t.Fatalf("entry allocation %d bytes, want %d (wire and TTL offsets only)", cap(it.wire), want)
			}
			// The records of the entry and of a reply built from it are
			// those the upstream sent.
			cq := clientQuery(t, q, tc.qtype, 0, false)
			for _, w := range [][]byte{it.wire, it.appendReply(nil, cq, time.Unix(0, 0), 0, 512)} {
				got := unpack(t, w)
				if len(got.Answer) != len(m.Answer) {
					t.Fatalf("%d answers, want %d", len(got.Answer), len(m.Answer))
				}
				for i := range got.Answer {
					if got.Answer[i].String() != m.Answer[i].String() {
						t.Fatalf("answer %d: %s, want %s", i, got.Answer[i], m.Answer[i])
					}
				}
			}
		})
	}
}
