//go:build faults

package faults

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Garbage modes of fakeUpstream: what it sends instead of a real answer.
const (
	garbageNone = iota
	// garbageSpray sends, for every query, a burst of datagrams that must
	// all be discarded: random bytes, a 5-byte header, the right answer
	// with a wrong ID, an answer to another question with the right ID,
	// and the query echoed back without QR.
	garbageSpray
	// garbageBadBody sends a reply with the right ID, QR and question but
	// a record section that does not parse.
	garbageBadBody
)

// evilIP is the address every forged answer carries: it must never reach
// a client.
var evilIP = net.IPv4(6, 6, 6, 6)

// fakeUpstream is a misbehaving authoritative-ish DNS server on raw UDP:
// it answers every A query with an address derived from the name, and can
// drop a fraction of queries, go silent, close its port, answer late, or
// answer garbage.
type fakeUpstream struct {
	t    *testing.T
	addr netip.AddrPort

	dropRate atomic.Uint64 // math.Float64bits of the fraction of queries dropped
	silent   atomic.Bool
	delay    atomic.Int64 // ns before answering
	garbage  atomic.Int32
	ttl      atomic.Uint32

	received atomic.Int64 // queries read
	answered atomic.Int64 // real answers sent

	mu   sync.Mutex
	conn *net.UDPConn
	rng  *rand.Rand
	wg   sync.WaitGroup
}

// newFakeUpstream listens on 127.0.0.1:0 and serves until the test ends.
func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{t: t, rng: rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))}
	u.ttl.Store(60)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("fake upstream: listen: %v", err)
	}
	u.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
	u.serve(c)
	t.Cleanup(u.close)
	return u
}

func (u *fakeUpstream) serve(c *net.UDPConn) {
	u.mu.Lock()
	u.conn = c
	u.mu.Unlock()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		buf := make([]byte, 4096)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.received.Add(1)
			u.handle(c, append([]byte(nil), buf[:n]...), from)
		}
	}()
}

// close stops listening: the port answers ICMP port unreachable from now on.
func (u *fakeUpstream) close() {
	u.mu.Lock()
	c := u.conn
	u.conn = nil
	u.mu.Unlock()
	if c != nil {
		c.Close()
	}
	u.wg.Wait()
}

// reopen listens again on the same port after close.
func (u *fakeUpstream) reopen() {
	u.t.Helper()
	var c *net.UDPConn
	var err error
	for range 50 { // the port is ours unless someone took it meanwhile
		if c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(u.addr)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		u.t.Fatalf("fake upstream: listen again on %s: %v", u.addr, err)
	}
	u.serve(c)
}

func (u *fakeUpstream) setDropRate(f float64) { u.dropRate.Store(uint64(f * 1e6)) }

func (u *fakeUpstream) drop() bool {
	rate := float64(u.dropRate.Load()) / 1e6
	if rate <= 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rng.Float64() < rate
}

// ipFor is the address the upstream gives name: clients check that they
// got this and nothing else.
func ipFor(name string) net.IP {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(dns.Fqdn(name))))
	s := h.Sum32()
	return net.IPv4(10, byte(s>>16), byte(s>>8), byte(s)|1)
}

func (u *fakeUpstream) handle(c *net.UDPConn, pkt []byte, from netip.AddrPort) {
	if u.silent.Load() || u.drop() {
		return
	}
	q := new(dns.Msg)
	if err := q.Unpack(pkt); err != nil || len(q.Question) != 1 {
		return
	}
	var out [][]byte
	switch u.garbage.Load() {
	case garbageSpray:
		out = u.spray(q, pkt)
	case garbageBadBody:
		r := answer(q, u.ttl.Load())
		b, _ := r.Pack()
		// Claim three more answers than there are: the records run off
		// the end of the packet.
		binary.BigEndian.PutUint16(b[6:], binary.BigEndian.Uint16(b[6:])+3)
		out = [][]byte{b}
	default:
		b, err := answer(q, u.ttl.Load()).Pack()
		if err != nil {
			return
		}
		out = [][]byte{b}
		u.answered.Add(1)
	}
	send := func() {
		for _, b := range out {
			_, _ = c.WriteToUDPAddrPort(b, from)
		}
	}
	if d := time.Duration(u.delay.Load()); d > 0 {
		time.AfterFunc(d, send)
		return
	}
	send()
}

// answer is the honest reply to q.
func answer(q *dns.Msg, ttl uint32) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	r.RecursionAvailable = true
	qq := q.Question[0]
	if qq.Qtype == dns.TypeA && qq.Qclass == dns.ClassINET {
		r.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   ipFor(qq.Name),
		}}
	}
	return r
}

// forged is an answer carrying evilIP.
func forged(q *dns.Msg, name string) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	r.Question[0].Name = name
	r.Answer = []dns.RR{&dns.A{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
		A:   evilIP,
	}}
	return r
}

func (u *fakeUpstream) spray(q *dns.Msg, pkt []byte) [][]byte {
	var out [][]byte
	u.mu.Lock()
	random := make([]byte, 12+u.rng.IntN(200))
	for i := range random {
		random[i] = byte(u.rng.Uint32())
	}
	u.mu.Unlock()
	out = append(out, random)
	out = append(out, []byte{pkt[0], pkt[1], 0x81, 0x80, 0x00})
	wrongID := forged(q, q.Question[0].Name)
	wrongID.Id = q.Id ^ 0x5a5a
	other := forged(q, "attacker.example.")
	echo := append([]byte(nil), pkt...) // QR clear: a query, not a reply
	for _, m := range []*dns.Msg{wrongID, other} {
		b, err := m.Pack()
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return append(out, echo)
}
