package resolver

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// seen is one query an upstream received.
type seen struct {
	proto string
	src   netip.AddrPort
	id    uint16
	name  string
	qtype uint16
	at    time.Time
}

// fakeUpstream is a real miekg/dns server (UDP and TCP on one port of
// 127.0.0.1) that records every query with its source address and arrival
// time. answer returns the reply, or nil for silence.
type fakeUpstream struct {
	addr   string
	mu     sync.Mutex
	log    []seen
	answer func(s seen, req *dns.Msg) *dns.Msg
	udp    *dns.Server
	tcp    *dns.Server
}

func newFakeUpstream(t testing.TB, answer func(s seen, req *dns.Msg) *dns.Msg) *fakeUpstream {
	t.Helper()
	// UDP and TCP on one port: the TCP side of a random UDP port may be
	// taken (by another test's connection), so try a few ports.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	f := &fakeUpstream{addr: pc.LocalAddr().String(), answer: answer}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		s := seen{proto: w.RemoteAddr().Network(), id: r.Id, at: time.Now()}
		s.src = netip.MustParseAddrPort(w.RemoteAddr().String())
		if len(r.Question) > 0 {
			s.name, s.qtype = r.Question[0].Name, r.Question[0].Qtype
		}
		f.mu.Lock()
		f.log = append(f.log, s)
		ans := f.answer
		f.mu.Unlock()
		if m := ans(s, r); m != nil {
			w.WriteMsg(m)
		}
	})
	started := make(chan struct{}, 2)
	f.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }}
	f.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }}
	go f.udp.ActivateAndServe()
	go f.tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() { f.udp.Shutdown(); f.tcp.Shutdown() })
	return f
}

func (f *fakeUpstream) queries() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.log...)
}

func (f *fakeUpstream) setAnswer(a func(s seen, req *dns.Msg) *dns.Msg) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

// rr parses a record in zone-file syntax.
func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("bad test record %q: %v", s, err)
	}
	return r
}

// zoneAnswer answers from a tiny zone: www.example. A/AAAA, big.example.
// TXT (~1200 bytes), NXDOMAIN with SOA for anything else. ttl sets all
// TTLs; delay (if any) is applied per qtype.
func zoneAnswer(t testing.TB, ttl uint32, delay map[uint16]time.Duration) func(seen, *dns.Msg) *dns.Msg {
	soa := rr(t, "example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 60")
	return func(s seen, req *dns.Msg) *dns.Msg {
		if d := delay[s.qtype]; d > 0 {
			time.Sleep(d)
		}
		m := new(dns.Msg).SetReply(req)
		m.RecursionAvailable = true
		name := strings.ToLower(s.name)
		hdr := dns.RR_Header{Name: s.name, Class: dns.ClassINET, Ttl: ttl}
		switch {
		case name == "www.example." && s.qtype == dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP("192.0.2.1")})
		case name == "www.example." && s.qtype == dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")})
		case name == "big.example." && s.qtype == dns.TypeTXT:
			hdr.Rrtype = dns.TypeTXT
			for i := 0; i < 6; i++ {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{strings.Repeat(string(rune('a'+i)), 200)}})
			}
		case strings.HasSuffix(name, "example.") && name != "www.example." && name != "big.example.":
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, dns.Copy(soa))
		default:
			// NODATA with SOA
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
		if s.proto == "udp" {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		return m
	}
}

// testConfig is a config for a server on 127.0.0.1:0 in front of ups,
// with short timeouts so failure tests are quick.
func testConfig(ups ...string) Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.HealthListen = ""
	c.Upstreams = ups
	c.Timeout = 300 * time.Millisecond
	c.TotalTimeout = 900 * time.Millisecond
	c.ResolvConf = "/nonexistent"
	return c
}

// udpAddr is the server's first bound UDP address (its port when asked
// for port 0).
func udpAddr(s *Server) netip.AddrPort {
	return s.lns[0].udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// tcpAddr is the server's first bound TCP address.
func tcpAddr(s *Server) netip.AddrPort { return s.lns[0].tcp.Addr().(*net.TCPAddr).AddrPort() }

// startServer starts a resolver and stops it when the test ends.
func startServer(t *testing.T, cfg Config, opts ...func(*Server)) *Server {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(s) // before Start: the serving goroutines read these fields
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// ask sends one query to the server and returns the reply.
func ask(t testing.TB, s *Server, proto, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second, UDPSize: 65535}
	addr := udpAddr(s).String()
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply ID %d, query ID %d", r.Id, m.Id)
	}
	return r
}

// rawExchange sends raw bytes over UDP and returns the raw reply, or nil
// when nothing comes back within wait.
func rawExchange(t testing.TB, addr netip.AddrPort, pkt []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
