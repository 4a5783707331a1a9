package resolver

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// nodeConfig is a node-mode config answering on 127.0.0.1 and 127.0.0.2
// (port 0) with the given default and cluster upstreams.
func nodeConfig(def, cluster string) Config {
	c := testConfig(def)
	c.NodeLocal = true
	c.NodeLocalAddress = "127.0.0.1"
	c.NodeLocalIntercept = "127.0.0.2"
	c.ClusterUpstreams = []string{cluster}
	return c
}

func TestInZone(t *testing.T) {
	w := func(s string) []byte {
		b, ok := wireZone(s)
		if !ok {
			t.Fatalf("wireZone(%q)", s)
		}
		return b
	}
	cases := []struct {
		name, zone string
		want       bool
	}{
		{"cluster.local", "cluster.local", true},
		{"kubernetes.default.svc.cluster.local.", "cluster.local", true},
		{"xcluster.local", "cluster.local", false},
		{"cluster.local.example", "cluster.local", false},
		{"local", "cluster.local", false},
		{"10.0.96.10.in-addr.arpa", "in-addr.arpa", true},
		{"example.com", ".", true},
		{"a.b.c", "b.c", true},
		{"ab.c", "b.c", false},
	}
	for _, c := range cases {
		if got := inZone(w(c.name), w(c.zone)); got != c.want {
			t.Errorf("inZone(%q, %q) = %v, want %v", c.name, c.zone, got, c.want)
		}
	}
}

func TestNodeModeRoutesZonesAndUsesTCPForCluster(t *testing.T) {
	def := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cluster := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		if req.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, rr(t, req.Question[0].Name+" 30 IN A 10.96.0.1"))
		}
		return m
	})
	s := startServer(t, nodeConfig(def.addr, cluster.addr))
	if n := len(s.Addrs()); n != 2 {
		t.Fatalf("want listeners on both node-local addresses, got %v", s.Addrs())
	}
	for _, name := range []string{"kubernetes.default.svc.Cluster.Local.", "1.0.96.10.in-addr.arpa.", "x.ip6.arpa."} {
		ask(t, s, "udp", name, dns.TypeA, 0)
	}
	r := ask(t, s, "udp", "www.example.", dns.TypeA, 1232)
	if len(r.Answer) != 1 {
		t.Fatalf("www.example. via default group: %v", r)
	}
	// Cluster-domain lookups must reach the cluster upstream, over TCP
	// only (force_tcp); nothing else may go there.
	cq := cluster.queries()
	var names []string
	for _, q := range cq {
		names = append(names, q.name)
		if q.proto != "tcp" {
			t.Errorf("cluster upstream got %s over %s, want tcp", q.name, q.proto)
		}
	}
	// The readiness probe ("cluster.local. SOA") also goes to the cluster group.
	got := strings.Join(names, " ")
	for _, want := range []string{"kubernetes.default.svc.cluster.local.", "1.0.96.10.in-addr.arpa.", "x.ip6.arpa."} {
		if !strings.Contains(got, want) {
			t.Errorf("cluster upstream missed %s; got %s", want, got)
		}
	}
	if strings.Contains(got, "example.") {
		t.Errorf("cluster upstream got an external name: %s", got)
	}
	for _, q := range def.queries() {
		if strings.Contains(q.name, "cluster.local") || strings.Contains(q.name, "arpa") {
			t.Errorf("default upstream got cluster name %s", q.name)
		}
	}
	// The second listener (the intercepted Service IP) answers too.
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg).SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
	if r, _, err := c.Exchange(m, s.Addrs()[1].String()); err != nil || len(r.Answer) != 1 {
		t.Fatalf("intercept address: %v %v", r, err)
	}
}

func TestNodeModeClusterUpstreamUDP(t *testing.T) {
	def := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cluster := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cfg := nodeConfig(def.addr, cluster.addr)
	cfg.ClusterUpstreamUDP = true
	s := startServer(t, cfg)
	ask(t, s, "udp", "a.svc.cluster.local.", dns.TypeA, 0)
	for _, q := range cluster.queries() {
		if q.name == "a.svc.cluster.local." && q.proto != "udp" {
			t.Fatalf("--cluster-upstream-udp: got %s", q.proto)
		}
	}
}

func TestNodeModeReadyOnlyAfterClusterAnswers(t *testing.T) {
	def := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	// Silent at first: every readiness probe times out.
	cluster := newFakeUpstream(t, func(seen, *dns.Msg) *dns.Msg { return nil })
	cfg := nodeConfig(def.addr, cluster.addr)
	cfg.HealthListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	readyz := func() int {
		resp, err := http.Get("http://" + s.HealthAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != 503 {
		t.Fatalf("readyz before the cluster DNS answered: %d, want 503", code)
	}
	if err := Probe([]string{"--readyz=" + s.HealthAddr()}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("probe --readyz while not ready: %v, want a 503 error", err)
	}
	cluster.setAnswer(func(s seen, req *dns.Msg) *dns.Msg { return new(dns.Msg).SetReply(req) })
	deadline := time.Now().Add(5 * time.Second)
	for readyz() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("readyz never turned 200 after the cluster DNS answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := Probe([]string{"--readyz=" + s.HealthAddr()}, io.Discard, io.Discard); err != nil {
		t.Fatalf("probe --readyz when ready: %v", err)
	}
}

func TestNodeModeValidation(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.ClusterUpstreams = nil }, "--cluster-upstream="},
		{func(c *Config) { c.NodeLocalAddress = "bogus" }, "--node-local-address=bogus"},
		{func(c *Config) { c.NodeLocalAddress = "" }, "--node-local-address="},
		{func(c *Config) { c.ClusterUpstreams = []string{"127.0.0.2:0"}; c.Listen = "127.0.0.1:53" }, "port 0"},
		{func(c *Config) { c.Listen = "127.0.0.1:53"; c.ClusterUpstreams = []string{"127.0.0.2"} }, "own listen"},
		{func(c *Config) { c.ClusterDomain = "a..b" }, "--cluster-domain=a..b"},
		{func(c *Config) { c.NodeLocalInterface = "much-too-long-name0" }, "--node-local-interface"},
	} {
		cfg := nodeConfig("127.0.0.9:53", "127.0.0.8:53")
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
	// A non-loopback node-local address is fine in node mode (no
	// --allow-non-loopback needed); the listen port comes from --listen.
	cfg := nodeConfig("127.0.0.9:53", "10.96.0.10")
	cfg.NodeLocalAddress, cfg.NodeLocalIntercept, cfg.Listen = "169.254.20.10", "10.96.0.11", "127.0.0.1:53"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.ListenAddrs(); len(got) != 2 || got[0].String() != "169.254.20.10:53" || got[1].String() != "10.96.0.11:53" || !cfg.reusePort() {
		t.Fatalf("listen addrs %v reuseport %v", got, cfg.ReusePort)
	}
}

// TestReusePortHandover: two servers share an address with SO_REUSEPORT;
// after the first shuts down (detach, drain, close) every query is
// answered by the second and none is lost.
func TestReusePortHandover(t *testing.T) {
	up := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cfg := testConfig(up.addr)
	cfg.ReusePort = true
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	cfg.Listen = udpAddr(a).String()
	b := startServer(t, cfg)
	if udpAddr(b) != udpAddr(a) {
		t.Fatalf("second instance bound %v, first %v", udpAddr(b), udpAddr(a))
	}
	addr := udpAddr(a).String()
	stop := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		c := &dns.Client{Timeout: time.Second}
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
			if _, _, err := c.Exchange(m, addr); err != nil {
				errs <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if err := <-errs; err != nil {
		t.Fatalf("query lost across the handover: %v", err)
	}
	if _, err := net.Dial("udp", addr); err != nil {
		t.Fatal(err)
	}
}

// TestNodeModeReadyWhenClusterDNSRefusesTheRoot: an air-gapped cluster DNS
// refuses ". NS" (its own upstream refuses it) but answers its zone's SOA;
// the node cache must turn ready (it never did on the e2e node).
func TestNodeModeReadyWhenClusterDNSRefusesTheRoot(t *testing.T) {
	def := newFakeUpstream(t, zoneAnswer(t, 60, nil))
	cluster := newFakeUpstream(t, func(s seen, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		q := req.Question[0]
		if q.Qtype == dns.TypeSOA && strings.EqualFold(q.Name, "cluster.local.") {
			m.Authoritative = true
			m.Answer = append(m.Answer, rr(t, "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30"))
			return m
		}
		m.Rcode = dns.RcodeRefused
		return m
	})
	s := startServer(t, nodeConfig(def.addr, cluster.addr))
	deadline := time.Now().Add(10 * time.Second)
	for !s.ready.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("node cache not ready 10s after start although the cluster DNS answers its SOA")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
