package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Sentinel errors of the upstream path.
var (
	// ErrNoUpstream means no upstream answered within the budget.
	ErrNoUpstream = errors.New("no upstream answered")
	errTimeout    = errors.New("upstream timeout")
)

// upstream is one forwarding target with its pool of UDP sockets and its
// health state.
type upstream struct {
	addr netip.AddrPort
	name string

	mu   sync.Mutex
	idle []*net.UDPConn // connected sockets with no query in flight

	fails     atomic.Int32 // consecutive failures
	downUntil atomic.Int64 // unix ns; non-zero: unhealthy, probe due after it
	probing   atomic.Bool

	lat     *histogram
	errs    *counterVec
	queries *counter
}

// getConn takes an idle socket or opens a new one. Each socket is
// connect()ed to the upstream: the kernel picks a random source port
// (Linux randomizes UDP ephemeral ports) and drops datagrams from any
// other address, and an ICMP port-unreachable surfaces as ECONNREFUSED,
// which makes failover immediate.
func (u *upstream) getConn() (*net.UDPConn, error) {
	u.mu.Lock()
	if n := len(u.idle); n > 0 {
		c := u.idle[n-1]
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		return c, nil
	}
	u.mu.Unlock()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.addr))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.name, err)
	}
	return c, nil
}

// putConn returns a socket whose query completed to the idle pool.
func (u *upstream) putConn(c *net.UDPConn, maxIdle int) {
	u.mu.Lock()
	if len(u.idle) < maxIdle {
		u.idle = append(u.idle, c)
		c = nil
	}
	u.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (u *upstream) closeIdle() {
	u.mu.Lock()
	for _, c := range u.idle {
		c.Close()
	}
	u.idle = nil
	u.mu.Unlock()
}

// healthy reports whether the upstream should get queries at now.
func (u *upstream) healthy() bool { return u.downUntil.Load() == 0 }

// upstreamUDPBuf is the read buffer of one UDP try. Upstreams are asked
// for at most ourUDPSize bytes; a datagram that fills the buffer is
// treated as truncated and retried over TCP. Kept small because every
// query in flight holds one (64 KiB buffers made RSS under a miss flood
// 30+ MiB).
const upstreamUDPBuf = 4096

// Forwarder sends queries upstream. No two queries in flight ever share a
// UDP socket: every try takes a socket of its own from the pool.
type Forwarder struct {
	ups          []*upstream
	tryTimeout   time.Duration
	budget       time.Duration
	forceTCP     bool
	parallelAAAA bool
	maxIdle      int
	failLimit    int32
	probeEvery   time.Duration
	serial       serializer
	log          *slog.Logger
	bufs         sync.Pool
}

// ForwarderConfig is the part of Config the forwarder uses.
type ForwarderConfig struct {
	Upstreams    []netip.AddrPort
	TryTimeout   time.Duration
	Budget       time.Duration
	ForceTCP     bool
	ParallelAAAA bool
	MaxIdle      int
	// Label prefixes the upstream label of this group's metrics, so the
	// same server in two groups gives two series.
	Label string
}

// NewForwarder returns a forwarder to the given upstreams.
func NewForwarder(cfg ForwarderConfig, m *Metrics, log *slog.Logger) *Forwarder {
	f := &Forwarder{
		tryTimeout:   cfg.TryTimeout,
		budget:       cfg.Budget,
		forceTCP:     cfg.ForceTCP,
		parallelAAAA: cfg.ParallelAAAA,
		maxIdle:      max(1, cfg.MaxIdle),
		failLimit:    3,
		probeEvery:   5 * time.Second,
		serial:       serializer{m: map[string]*keyLock{}},
		log:          log,
	}
	f.bufs.New = func() any { b := make([]byte, upstreamUDPBuf); return &b }
	for _, a := range cfg.Upstreams {
		u := &upstream{addr: a, name: cfg.Label + a.String()}
		if m != nil {
			u.lat, u.errs, u.queries = m.upstream(u.name)
		}
		f.ups = append(f.ups, u)
	}
	return f
}

// Close releases pooled sockets.
func (f *Forwarder) Close() {
	for _, u := range f.ups {
		u.closeIdle()
	}
}

// Healthy reports how many upstreams are currently considered healthy.
func (f *Forwarder) Healthy() int {
	n := 0
	for _, u := range f.ups {
		if u.healthy() {
			n++
		}
	}
	return n
}

// order lists upstreams to try: healthy ones in configured order; when
// none is healthy, all of them (a last resort beats certain failure).
// An unhealthy upstream whose probe is due gets a background probe.
func (f *Forwarder) order() []*upstream {
	now := time.Now().UnixNano()
	out := make([]*upstream, 0, len(f.ups))
	for _, u := range f.ups {
		d := u.downUntil.Load()
		if d == 0 {
			out = append(out, u)
			continue
		}
		if now >= d && u.probing.CompareAndSwap(false, true) {
			go f.probe(u)
		}
	}
	if len(out) == 0 {
		out = append(out, f.ups...)
	}
	return out
}

// probe sends ". IN NS" to an unhealthy upstream; an answer of any kind
// brings it back.
func (f *Forwarder) probe(u *upstream) {
	defer u.probing.Store(false)
	msg := buildQuery(nil, []byte{0}, typeNS, classIN, false, false, true)
	if _, err := f.tryUDP(u, msg, time.Now().Add(f.tryTimeout)); err == nil || errors.Is(err, errTruncated) {
		f.markOK(u)
		f.log.Info("upstream healthy again", "upstream", u.name)
		return
	}
	u.downUntil.Store(time.Now().Add(f.probeEvery).UnixNano())
}

func (f *Forwarder) markOK(u *upstream) {
	u.fails.Store(0)
	u.downUntil.Store(0)
}

func (f *Forwarder) markFail(u *upstream, err error) {
	if u.fails.Add(1) >= f.failLimit && u.downUntil.Load() == 0 {
		u.downUntil.Store(time.Now().Add(f.probeEvery).UnixNano())
		f.log.Warn("upstream marked unhealthy", "upstream", u.name, "err", err)
	}
}

// buildQuery appends an upstream query for the lowercased wire name.
// The ID is filled in per try.
func buildQuery(dst, name []byte, qtype, qclass uint16, do, cd, edns bool) []byte {
	fl := uint16(flagRD)
	if cd {
		fl |= flagCD
	}
	var ar byte
	if edns {
		ar = 1
	}
	dst = append(dst, 0, 0, byte(fl>>8), byte(fl), 0, 1, 0, 0, 0, 0, 0, ar)
	dst = append(dst, name...)
	dst = append(dst, byte(qtype>>8), byte(qtype), byte(qclass>>8), byte(qclass))
	if edns {
		dst = appendOPT(dst, 0, do)
	}
	return dst
}

// Exchange resolves one question upstream and returns the raw reply. It
// tries upstreams in order, each for at most the per-try timeout, cycling
// until the total budget is spent. With serialization on, an A and an
// AAAA query for one name never overlap: each try holds the name's lock
// until its answer or timeout.
func (f *Forwarder) Exchange(ctx context.Context, name []byte, qtype, qclass uint16, do, cd bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.budget)
	defer cancel()
	deadline, _ := ctx.Deadline()
	edns := true
	msg := buildQuery(make([]byte, 0, len(name)+32), name, qtype, qclass, do, cd, edns)
	var skey string
	if !f.parallelAAAA && (qtype == typeA || qtype == typeAAAA) {
		skey = string(name) + string([]byte{byte(qclass >> 8), byte(qclass)})
	}
	order := f.order()
	var lastReply []byte
	lastErr := ErrNoUpstream
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			break
		}
		u := order[attempt%len(order)]
		if lastReply != nil && attempt >= len(order) {
			break // every upstream returned SERVFAIL/REFUSED: give that back
		}
		var release func()
		if skey != "" {
			var err error
			if release, err = f.serial.acquire(ctx, skey); err != nil {
				break
			}
		}
		tryDeadline := earlier(time.Now().Add(f.tryTimeout), deadline)
		reply, err := f.try(u, msg, tryDeadline, deadline)
		if release != nil {
			release()
		}
		if err != nil {
			lastErr = err
			if u.errs != nil {
				u.errs.inc(errReason(err))
			}
			f.markFail(u, err)
			if !errors.Is(err, errTimeout) && (attempt+1)%len(order) == 0 {
				// Every upstream failed at once (e.g. ICMP port
				// unreachable): pause until this try's deadline rather
				// than spin through the budget.
				select {
				case <-ctx.Done():
				case <-time.After(time.Until(tryDeadline)):
				}
			}
			continue
		}
		f.markOK(u)
		switch reply[3] & 0xF {
		case rcodeFormErr:
			if edns {
				// An EDNS-intolerant upstream: ask again without OPT.
				edns = false
				msg = buildQuery(msg[:0], name, qtype, qclass, false, cd, false)
				attempt--
				continue
			}
			lastReply = reply
		case rcodeServFail, rcodeRefused:
			lastReply = reply
		default:
			return reply, nil
		}
	}
	if lastReply != nil {
		return lastReply, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrNoUpstream, lastErr)
}

func errReason(err error) string {
	switch {
	case errors.Is(err, errTimeout):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, errTruncated):
		return "truncated"
	case errors.Is(err, errMalformed):
		return "malformed"
	default:
		return "other"
	}
}

// try sends msg to u once (over UDP, then TCP when truncated, or TCP only
// with forceTCP) with a fresh random ID and returns a copy of the reply.
func (f *Forwarder) try(u *upstream, msg []byte, deadline, budgetEnd time.Time) ([]byte, error) {
	start := time.Now()
	if u.queries != nil {
		u.queries.inc()
	}
	var reply []byte
	var err error
	if f.forceTCP {
		reply, err = f.tryTCP(u, msg, deadline)
	} else {
		reply, err = f.tryUDP(u, msg, deadline)
		if errors.Is(err, errTruncated) {
			// The TCP retry gets a full per-try timeout of its own, within
			// the budget.
			reply, err = f.tryTCP(u, msg, earlier(time.Now().Add(f.tryTimeout), budgetEnd))
		}
	}
	if err == nil && u.lat != nil {
		u.lat.observe(time.Since(start).Seconds())
	}
	return reply, err
}

func setID(msg []byte) { binary.BigEndian.PutUint16(msg, uint16(rand.Uint32())) }

func (f *Forwarder) tryUDP(u *upstream, msg []byte, deadline time.Time) ([]byte, error) {
	c, err := u.getConn()
	if err != nil {
		return nil, err
	}
	setID(msg)
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil, fmt.Errorf("send to %s: %w", u.name, err)
	}
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			// The socket may still receive the late reply; never reuse it.
			c.Close()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return nil, fmt.Errorf("%s: %w", u.name, errTimeout)
			}
			return nil, fmt.Errorf("read from %s: %w", u.name, err)
		}
		err = checkReply(buf[:n], msg)
		if err == nil && n == len(buf) {
			err = errTruncated // possibly cut by the buffer
		}
		switch {
		case errors.Is(err, errMismatch):
			continue // a stray or spoofed datagram: keep waiting
		case err != nil:
			u.putConn(c, f.maxIdle)
			return nil, err
		}
		u.putConn(c, f.maxIdle)
		return append([]byte(nil), buf[:n]...), nil
	}
}

func (f *Forwarder) tryTCP(u *upstream, msg []byte, deadline time.Time) ([]byte, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", u.addr.String())
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil, fmt.Errorf("tcp %s: %w", u.name, errTimeout)
		}
		return nil, fmt.Errorf("tcp dial %s: %w", u.name, err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	setID(msg)
	out := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	if _, err := c.Write(append(out, msg...)); err != nil {
		return nil, fmt.Errorf("tcp send to %s: %w", u.name, err)
	}
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, tcpErr(u, err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			return nil, tcpErr(u, err)
		}
		switch err := checkReply(b, msg); {
		case errors.Is(err, errMismatch):
			continue
		case errors.Is(err, errTruncated):
			// Truncated even over TCP: take what there is.
			return b, nil
		case err != nil:
			return nil, err
		}
		return b, nil
	}
}

func tcpErr(u *upstream, err error) error {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Errorf("tcp %s: %w", u.name, errTimeout)
	}
	return fmt.Errorf("tcp read from %s: %w", u.name, err)
}

// serializer makes queries for one key wait for each other, first come
// first served: a name whose first query keeps retrying must not starve
// the other type (each try releases the key and the next waiter goes).
type serializer struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	waiters []chan struct{} // closed when ownership passes to that waiter
}

// acquire blocks until key is ours (or ctx ends) and returns the release.
func (s *serializer) acquire(ctx context.Context, key string) (func(), error) {
	s.mu.Lock()
	l, busy := s.m[key]
	if !busy {
		s.m[key] = &keyLock{}
		s.mu.Unlock()
		return func() { s.release(key) }, nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return func() { s.release(key) }, nil
	case <-ctx.Done():
		s.mu.Lock()
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				s.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		s.mu.Unlock()
		// Ownership was handed over just as ctx ended: pass it on.
		s.release(key)
		return nil, ctx.Err()
	}
}

func (s *serializer) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.m[key]
	if len(l.waiters) == 0 {
		delete(s.m, key)
		return
	}
	next := l.waiters[0]
	l.waiters = l.waiters[1:]
	close(next)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
