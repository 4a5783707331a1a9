package resolver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Server is one resolver instance: UDP and TCP listeners, cache,
// forwarder, metrics and health endpoints.
type Server struct {
	cfg     Config
	cache   *Cache
	fwd     *Forwarder
	metrics *Metrics
	log     *slog.Logger
	rlog    *rateLimitedLogger
	pol     ttlPolicy
	now     func() time.Time
	flights flights

	inflight atomic.Int64
	// udpPending counts UDP misses being resolved off the reader
	// goroutines: their replies still need the socket.
	udpPending atomic.Int64
	tcpConns   atomic.Int64
	draining   atomic.Bool
	ready      atomic.Bool

	routes  []route // per-zone upstream groups (node mode), before s.fwd
	lns     []*listener
	health  *healthServer
	metricz *healthServer  // --metrics-listen: /metrics only
	wg      sync.WaitGroup // listener loops and connections
	bg      sync.WaitGroup // miss goroutines and prefetches
	closing atomic.Bool
	scratch sync.Pool
}

// New builds a server from a validated config. Nothing listens until
// Start.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := NewMetrics()
	s := &Server{
		cfg:     cfg,
		cache:   NewCache(cfg.CacheSize, cfg.CacheBytes, staleWindow(cfg)),
		metrics: m,
		log:     log,
		rlog:    newRateLimitedLogger(log, 10, 10*time.Second),
		pol: ttlPolicy{
			min:         uint32(cfg.MinTTL / time.Second),
			max:         uint32(cfg.MaxTTL / time.Second),
			negMax:      uint32(cfg.NegMaxTTL / time.Second),
			servfailTTL: uint32(cfg.ServfailTTL / time.Second),
		},
		now:     time.Now,
		flights: flights{m: map[string]*flight{}},
	}
	s.fwd = NewForwarder(ForwarderConfig{
		Upstreams:     cfg.upstreamAddrs,
		MinTryTimeout: cfg.MinTimeout,
		MaxTryTimeout: cfg.Timeout,
		Budget:        cfg.TotalTimeout,
		ForceTCP:      cfg.ForceTCP,
		ParallelAAAA:  cfg.ParallelAAAA,
		SocketReuse:   cfg.UDPSocketReuse,
		MaxIdle:       cfg.MaxIdleSockets,
	}, m, log)
	if cfg.NodeLocal {
		// The cluster zones go to the cluster DNS, over TCP unless told
		// otherwise (like NodeLocal DNSCache's force_tcp), on pooled,
		// pipelined connections (tcppool.go).
		cf := NewForwarder(ForwarderConfig{
			Upstreams:     cfg.clusterAddrs,
			MinTryTimeout: cfg.MinTimeout,
			MaxTryTimeout: cfg.Timeout,
			Budget:        cfg.TotalTimeout,
			ForceTCP:      !cfg.ClusterUpstreamUDP || cfg.ForceTCP,
			ParallelAAAA:  cfg.ParallelAAAA,
			SocketReuse:   cfg.UDPSocketReuse,
			MaxIdle:       cfg.MaxIdleSockets,
			Label:         "cluster/",
		}, m, log)
		for _, z := range []string{cfg.ClusterDomain, "in-addr.arpa", "ip6.arpa"} {
			wz, _ := wireZone(z)
			s.routes = append(s.routes, route{zone: wz, fwd: cf})
		}
	}
	s.scratch.New = func() any { return newScratch() }
	m.cacheEntries = s.cache.Len
	m.cacheBytes = s.cache.Bytes
	m.tcpConns = func() int { return int(s.tcpConns.Load()) }
	m.inflight = func() int { return int(s.inflight.Load()) }
	m.healthyUps = func() int { h, _ := s.healthyUpstreams(); return h }
	return s, nil
}

func staleWindow(cfg Config) time.Duration {
	if cfg.ServeStale {
		return cfg.StaleMaxAge
	}
	return 0
}

// setClock replaces the clock of the server, cache and forwarder (tests).
func (s *Server) setClock(now func() time.Time) {
	s.now = now
	s.cache.now = now
}

// listener is one bound address: a UDP socket and a TCP listener on the
// same IP and port.
type listener struct {
	addr netip.AddrPort
	udp  *net.UDPConn
	tcp  *net.TCPListener
}

// Addrs lists every bound address (UDP and TCP share each).
func (s *Server) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.addr
	}
	return out
}

// HealthAddr is the bound health/metrics address, if any.
func (s *Server) HealthAddr() string {
	if s.health == nil {
		return ""
	}
	return s.health.ln.Addr().String()
}

// MetricsAddr is the bound --metrics-listen address, if any.
func (s *Server) MetricsAddr() string {
	if s.metricz == nil {
		return ""
	}
	return s.metricz.ln.Addr().String()
}

// Start binds the listeners and serves in the background. With port 0
// the TCP listener takes the port the UDP socket got.
func (s *Server) Start() error {
	for _, a := range s.cfg.listenAddrs {
		l, err := s.bind(a)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.lns = append(s.lns, l)
	}
	if s.cfg.HealthListen != "" {
		h, err := newHealthServer(s, s.cfg.HealthListen, false)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.health = h
	}
	if s.cfg.MetricsListen != "" {
		// Fail the start rather than run unobserved: an operator who asked
		// for metrics has alerts that would otherwise stay silent.
		m, err := newHealthServer(s, s.cfg.MetricsListen, true)
		if err != nil {
			s.closeListeners()
			if s.health != nil {
				_ = s.health.shutdown(context.Background())
				s.health = nil
			}
			return err
		}
		s.metricz = m
	}
	readers := max(2, runtime.GOMAXPROCS(0))
	for _, l := range s.lns {
		for range readers {
			s.wg.Add(1)
			go s.serveUDP(l)
		}
		s.wg.Add(1)
		go s.serveTCP(l)
	}
	if s.cfg.NodeLocal {
		// Ready only once the cluster DNS has answered (see waitUpstream).
		s.bg.Add(1)
		go s.waitUpstream(s.routes[0].fwd)
	} else {
		s.ready.Store(true)
	}
	s.log.Info("resolver listening", "addrs", s.Addrs(),
		"upstreams", s.cfg.Upstreams, "cluster_upstreams", s.cfg.ClusterUpstreams, "health", s.HealthAddr(), "metrics", s.MetricsAddr())
	return nil
}

// bind opens the UDP socket and TCP listener of one address.
func (s *Server) bind(a netip.AddrPort) (*listener, error) {
	lc := net.ListenConfig{}
	if s.cfg.reusePort() {
		lc.Control = reusePort
	}
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", a.String())
		if err != nil {
			return nil, fmt.Errorf("udp %s: %w", a, err)
		}
		udp := pc.(*net.UDPConn)
		ap := udp.LocalAddr().(*net.UDPAddr).AddrPort()
		ln, err := lc.Listen(context.Background(), "tcp", ap.String())
		if err == nil {
			// A bigger receive queue absorbs bursts while the readers are
			// off CPU (the kernel caps it at net.core.rmem_max; memory is
			// used only when datagrams queue).
			_ = udp.SetReadBuffer(1 << 20)
			return &listener{addr: ap, udp: udp, tcp: ln.(*net.TCPListener)}, nil
		}
		udp.Close()
		// With port 0 the TCP side of the port UDP got may be taken:
		// try another port.
		if a.Port() != 0 || try == 10 {
			return nil, fmt.Errorf("tcp %s: %w", ap, err)
		}
	}
}

func (s *Server) closeListeners() {
	for _, l := range s.lns {
		l.udp.Close()
		l.tcp.Close()
	}
	s.lns = nil
}

// batchConn is the part of ipv4.PacketConn / ipv6.PacketConn used here.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func (s *Server) serveUDP(l *listener) {
	defer s.wg.Done()
	var bc batchConn
	if l.addr.Addr().Is4() {
		bc = ipv4.NewPacketConn(l.udp)
	} else {
		bc = ipv6.NewPacketConn(l.udp)
	}
	// A query never needs more than maxQuerySize bytes; a longer datagram
	// arrives cut short and fails to parse (FORMERR), which is right.
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxQuerySize)}
	}
	out := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	outVecs := make([][][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 512) // grows (and stays grown) as needed
		outVecs[i] = make([][]byte, 1)
	}
	sc := newScratch()
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.rlog.Error("udp read", "err", err)
			continue
		}
		out = out[:0]
		for i := 0; i < n; i++ {
			m := &in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			pkt := m.Buffers[0][:m.N]
			s.metrics.queries[0].inc()
			sc.out = outBufs[len(out)][:0]
			reply, act := s.answerFast(pkt, sc, false)
			switch act {
			case actReply:
				outBufs[len(out)] = reply[:0] // keep a grown buffer
				outVecs[len(out)][0] = reply
				out = append(out, ipv4.Message{Buffers: outVecs[len(out)], Addr: ua})
			case actResolve:
				s.resolveUDP(l, pkt, ua.AddrPort())
			}
		}
		// Send from a second slice header: advancing out itself would
		// leave it at the end of its array with no capacity, and every
		// later batch would allocate its messages again (about 100 bytes
		// of garbage per reply, most of the hit path's).
		for pending := out; len(pending) > 0; {
			w, err := bc.WriteBatch(pending, 0)
			if err != nil {
				if !s.closing.Load() {
					s.rlog.Warn("udp write", "err", err)
				}
				// Skip the datagram that failed and go on with the rest.
				w++
			}
			pending = pending[min(w, len(pending)):]
		}
	}
}

// resolveUDP answers a cache miss on its own goroutine with its own copy
// of the packet, so the reader goes straight back to reading.
func (s *Server) resolveUDP(l *listener, pkt []byte, addr netip.AddrPort) {
	msc := s.scratch.Get().(*scratch)
	msc.pkt = append(msc.pkt[:0], pkt...)
	s.bg.Add(1)
	s.udpPending.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.udpPending.Add(-1)
		// Re-parse the private copy (cheap) so msc.q references it.
		q := &msc.q
		_ = parseQuery(msc.pkt, q)
		msc.key = appendKey(msc.key[:0], q.qname(), q.qtype, q.qclass, q.do, q.cd())
		reply := s.answerSlow(msc, false)
		if _, err := l.udp.WriteToUDPAddrPort(reply, addr); err != nil && !s.closing.Load() {
			s.rlog.Warn("udp write", "client", addr.String(), "err", err)
		}
		msc.q = query{}
		s.scratch.Put(msc)
	}()
}

func (s *Server) serveTCP(l *listener) {
	defer s.wg.Done()
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.rlog.Error("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		if s.tcpConns.Add(1) > int64(s.cfg.MaxTCPConns) {
			s.tcpConns.Add(-1)
			s.metrics.dropped.inc("tcp_limit")
			s.rlog.Warn("too many tcp connections; closing new one", "limit", s.cfg.MaxTCPConns)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// tcpPipeline bounds the queries of one client connection being resolved
// at once; the reader waits when it is reached.
const tcpPipeline = 32

// serveConn answers queries on one TCP connection until the client closes
// it, stays idle for TCPIdleTimeout, or the server shuts down. Queries may
// be pipelined (RFC 7766 §7): cache hits are answered at once, misses on
// their own goroutines, each reply written as soon as it is ready, so a
// slow one does not hold back the others. Deadlines make stalled clients
// (half-sent lengths, unread replies) cost nothing but a slot until the
// timeout.
func (s *Server) serveConn(c *net.TCPConn) {
	defer s.wg.Done()
	defer s.tcpConns.Add(-1)
	defer c.Close()
	var wmu sync.Mutex
	var pending sync.WaitGroup
	defer pending.Wait()
	slots := make(chan struct{}, tcpPipeline)
	write := func(reply []byte) bool {
		out := make([]byte, 2, 2+len(reply))
		binary.BigEndian.PutUint16(out, uint16(len(reply)))
		out = append(out, reply...)
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		_, err := c.Write(out)
		return err == nil
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	br := bufio.NewReaderSize(c, 1024)
	buf := make([]byte, 512) // grows to the largest query seen
	for !s.closing.Load() {
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if n > cap(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			return
		}
		s.metrics.queries[1].inc()
		reply, act := s.answerFast(buf[:n], sc, true)
		switch act {
		case actDrop:
			return // garbage on a stream: the framing cannot be trusted
		case actResolve:
			slots <- struct{}{}
			msc := s.scratch.Get().(*scratch)
			msc.pkt = append(msc.pkt[:0], buf[:n]...)
			pending.Add(1)
			go func() {
				defer pending.Done()
				defer func() { <-slots }()
				q := &msc.q
				_ = parseQuery(msc.pkt, q)
				msc.key = appendKey(msc.key[:0], q.qname(), q.qtype, q.qclass, q.do, q.cd())
				if !write(s.answerSlow(msc, true)) {
					c.CloseRead() // the client is gone: stop reading too
				}
				msc.q = query{}
				s.scratch.Put(msc)
			}()
			continue
		}
		if !write(reply) {
			return
		}
	}
}
