package resolver

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func packQuery(t testing.TB, name string, qtype uint16, mod func(*dns.Msg)) []byte {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if mod != nil {
		mod(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedAndPolicy(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	s := startServer(t, testConfig(up.addr))
	addr := udpAddr(s)
	valid := packQuery(t, "www.example.", dns.TypeA, nil)
	response := append([]byte(nil), valid...)
	response[2] |= 0x80
	noQuestion := append([]byte(nil), valid[:headerLen]...)
	noQuestion[5] = 0
	twoQuestions := packQuery(t, "www.example.", dns.TypeA, func(m *dns.Msg) {
		m.Question = append(m.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	})
	cut := valid[:len(valid)-3]
	pointer := append(append([]byte(nil), valid[:headerLen]...), 0xC0, 0x0C, 0, 1, 0, 1)
	notify := packQuery(t, "www.example.", dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })
	ednsV1 := packQuery(t, "www.example.", dns.TypeA, func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
	})
	for _, tc := range []struct {
		name  string
		pkt   []byte
		rcode int // -1: no reply at all
	}{
		{"empty", []byte{}, -1},
		{"short header", valid[:7], -1},
		{"response sent as query", response, -1},
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"truncated question", cut, dns.RcodeFormatError},
		{"compressed question", pointer, dns.RcodeFormatError},
		{"notify opcode", notify, dns.RcodeNotImplemented},
		{"edns version 1", ednsV1, dns.RcodeBadVers},
		{"AXFR", packQuery(t, "example.", dns.TypeAXFR, nil), dns.RcodeRefused},
		{"IXFR", packQuery(t, "example.", dns.TypeIXFR, nil), dns.RcodeRefused},
		{"CHAOS class", packQuery(t, "version.bind.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"ANY (RFC 8482)", packQuery(t, "www.example.", dns.TypeANY, nil), dns.RcodeSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait := time.Second
			if tc.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			b := rawExchange(t, addr, tc.pkt, wait)
			if tc.rcode < 0 {
				if b != nil {
					t.Fatalf("got a %d-byte reply, want none", len(b))
				}
				return
			}
			if b == nil {
				t.Fatal("no reply")
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatalf("reply does not unpack: %v", err)
			}
			if m.Id != binary.BigEndian.Uint16(tc.pkt) || !m.Response {
				t.Fatalf("reply id %d response=%v", m.Id, m.Response)
			}
			if m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.name == "ANY (RFC 8482)" {
				if len(m.Answer) != 1 || m.Answer[0].(*dns.HINFO).Cpu != "RFC8482" {
					t.Fatalf("ANY answer %v, want one HINFO RFC8482", m.Answer)
				}
			}
		})
	}
	if n := len(up.queries()); n != 0 {
		t.Fatalf("%d queries reached upstream; none of these should", n)
	}
	// Still serving after all that.
	if r := ask(t, s, "udp", "www.example.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Fatalf("after bad input: %v", r)
	}
	// AXFR over TCP too.
	if r := ask(t, s, "tcp", "example.", dns.TypeAXFR, 0); r.Rcode != dns.RcodeRefused {
		t.Fatalf("AXFR over TCP: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestIDAndCaseEcho(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	s := startServer(t, testConfig(up.addr))
	for _, name := range []string{"www.example.", "WwW.eXaMpLe.", "WWW.EXAMPLE."} {
		for _, proto := range []string{"udp", "tcp"} {
			r := ask(t, s, proto, name, dns.TypeA, 0) // ask checks the ID
			if r.Question[0].Name != name {
				t.Fatalf("%s: question %q, want %q", proto, r.Question[0].Name, name)
			}
			if !r.RecursionAvailable || !r.RecursionDesired {
				t.Fatalf("RA/RD not set: %v", r.MsgHdr)
			}
		}
	}
	if n := len(up.queries()); n != 1 {
		t.Fatalf("%d upstream queries for one name in three cases, want 1", n)
	}
}

func TestTCPLimits(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	cfg.MaxTCPConns = 3
	cfg.TCPIdleTimeout = 300 * time.Millisecond
	s := startServer(t, cfg)
	addr := tcpAddr(s).String()
	var stalled []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0}) // half a length prefix, then nothing
		stalled = append(stalled, c)
	}
	time.Sleep(50 * time.Millisecond)
	// A fourth connection is closed at once: the limit holds.
	c4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c4.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c4.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection over the limit got data")
	}
	c4.Close()
	// UDP is unaffected by stalled TCP clients.
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	// Stalled clients are dropped after the idle timeout.
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("stalled connection: %v", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("stalled connection kept past the idle timeout")
		}
		c.Close()
	}
	deadline := time.Now().Add(time.Second)
	for s.tcpConns.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.tcpConns.Load(); n != 0 {
		t.Fatalf("%d tcp connections leaked", n)
	}
	// Several pipelined queries on one connection are all answered.
	r := ask(t, s, "tcp", "www.example.", dns.TypeAAAA, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("tcp after limit: %v", r)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	cfg.HealthListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	ask(t, s, "tcp", "nx.example.", dns.TypeA, 0)
	base := "http://" + s.HealthAddr()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	val := func(name string, labels map[string]string) float64 {
		f, ok := fams[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("metric %s%v missing", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dnsguard_resolver_queries_total", map[string]string{"proto": "udp"}, 2},
		{"dnsguard_resolver_queries_total", map[string]string{"proto": "tcp"}, 1},
		{"dnsguard_resolver_cache_hits_total", nil, 1},
		{"dnsguard_resolver_cache_misses_total", nil, 2},
		{"dnsguard_resolver_responses_total", map[string]string{"rcode": "NXDOMAIN"}, 1},
		{"dnsguard_resolver_cache_entries", nil, 2},
		{"dnsguard_resolver_upstream_duration_seconds", map[string]string{"upstream": up.addr}, 2},
		// Negative control (run 2026-12-07): metrics.go without the
		// build_info sample fails here with "metric dnsguard_build_info missing".
		{"dnsguard_build_info", map[string]string{"component": "resolver", "version": "dev"}, 1},
	} {
		if got := val(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// Draining: readyz fails, answers continue.
	s.Drain()
	resp, err = http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d", resp.StatusCode)
	}
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
}

func TestProbe(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	s := startServer(t, testConfig(up.addr))
	var out strings.Builder
	if err := Probe([]string{"--server=" + udpAddr(s).String()}, &out, io.Discard); err != nil {
		t.Fatalf("probe of a live server: %v", err)
	}
	if err := Probe([]string{"--server=" + udpAddr(s).String(), "--tcp"}, &out, io.Discard); err != nil {
		t.Fatalf("tcp probe: %v", err)
	}
	if len(up.queries()) != 0 {
		t.Fatal("probe reached the upstream")
	}
	// Nothing listens on the fake upstream's neighbour port of a closed socket.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := pc.LocalAddr().String()
	pc.Close()
	if err := Probe([]string{"--server=" + dead, "--timeout=200ms"}, &out, io.Discard); err == nil {
		t.Fatal("probe of a dead address succeeded")
	}
}

// TestAwaitDrain: the drain ends early only when clients have gone quiet,
// waits the full period while they keep asking, and stops at a second
// signal.
func TestAwaitDrain(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	const idle = 300 * time.Millisecond
	for _, tc := range []struct {
		name       string
		max        time.Duration
		idle       time.Duration
		askFor     time.Duration // a client queries every 50 ms this long
		interrupt  time.Duration // 0: no second signal
		want       string
		minT, maxT time.Duration
	}{
		{"quiet: ends after idle", 5 * time.Second, idle, 0, 0, "idle", idle, idle + 700*time.Millisecond},
		{"busy: waits while asked", 5 * time.Second, idle, 1500 * time.Millisecond, 0, "idle", 1500 * time.Millisecond, 1500*time.Millisecond + idle + 900*time.Millisecond},
		{"busy past max: full drain", 800 * time.Millisecond, idle, 2 * time.Second, 0, "drain", 800 * time.Millisecond, 1500 * time.Millisecond},
		{"idle 0: full drain", 600 * time.Millisecond, 0, 0, 0, "drain", 600 * time.Millisecond, 1200 * time.Millisecond},
		{"second signal", 5 * time.Second, 0, 0, 200 * time.Millisecond, "interrupted", 200 * time.Millisecond, 900 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, testConfig(up.addr))
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				end := time.Now().Add(tc.askFor)
				for time.Now().Before(end) {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					ask(t, s, "udp", "www.example.", dns.TypeA, 0)
				}
			}()
			sig := make(chan os.Signal, 1)
			if tc.interrupt > 0 {
				time.AfterFunc(tc.interrupt, func() { sig <- os.Interrupt })
			}
			start := time.Now()
			got := s.AwaitDrain(tc.max, tc.idle, sig)
			took := time.Since(start)
			close(stop)
			<-done
			if got != tc.want || took < tc.minT || took > tc.maxT {
				t.Errorf("AwaitDrain = %q after %s, want %q after %s..%s", got, took.Round(time.Millisecond), tc.want, tc.minT, tc.maxT)
			}
			if !s.draining.Load() {
				t.Errorf("not marked draining (readyz would pass)")
			}
		})
	}
}

// TestMetricsListen: --metrics-listen serves /metrics alone on its own
// listener (the probes stay on --health-listen), counts what the health
// listener's /metrics counts, and closes on Shutdown.
func TestMetricsListen(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	cfg := testConfig(up.addr)
	cfg.HealthListen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:0"
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.MetricsAddr() == "" || s.MetricsAddr() == s.HealthAddr() {
		t.Fatalf("metrics addr %q, health addr %q: want a listener of its own", s.MetricsAddr(), s.HealthAddr())
	}
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	ask(t, s, "udp", "www.example.", dns.TypeA, 0)
	get := func(method, url string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	base := "http://" + s.MetricsAddr()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"HEAD", "/metrics", 200},
		{"GET", "/metrics?x=1", 200},
		{"GET", "/healthz", 404},
		{"GET", "/readyz", 404},
		{"GET", "/", 404},
		{"POST", "/metrics", 405},
	} {
		if code, _ := get(tc.method, base+tc.path); code != tc.want {
			t.Errorf("%s %s on the metrics listener: %d, want %d", tc.method, tc.path, code, tc.want)
		}
	}
	// The health listener keeps all three.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := get("GET", "http://"+s.HealthAddr()+p); code != 200 {
			t.Errorf("GET %s on the health listener: %d", p, code)
		}
	}
	_, body := get("GET", base+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	var udp float64
	for _, m := range fams["dnsguard_resolver_queries_total"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetName() == "proto" && lp.GetValue() == "udp" {
				udp = m.Counter.GetValue()
			}
		}
	}
	if udp != 2 {
		t.Errorf("dnsguard_resolver_queries_total{proto=udp} = %v on the metrics listener, want 2", udp)
	}
	// Draining does not turn the scrape into a 503: metrics matter most then.
	s.Drain()
	if code, _ := get("GET", base+"/metrics"); code != 200 {
		t.Errorf("GET /metrics while draining: %d", code)
	}
	addr := s.MetricsAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("metrics listener %s still accepts after Shutdown", addr)
	}
}

// TestMetricsListenBusy: a metrics address that cannot be bound fails the
// start (an operator who asked for metrics would otherwise have silent
// alerts) and releases what was bound before it.
func TestMetricsListenBusy(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 300, nil))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(up.addr)
	cfg.HealthListen = "127.0.0.1:0"
	cfg.MetricsListen = busy.Addr().String()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	if err == nil || !strings.Contains(err.Error(), "metrics listen "+busy.Addr().String()) {
		t.Fatalf("Start with a busy metrics port: %v, want a metrics listen error", err)
	}
	if len(s.lns) != 0 || s.health != nil {
		t.Fatalf("failed start left listeners open: %d DNS, health %v", len(s.lns), s.health != nil)
	}
}
