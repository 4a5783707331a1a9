package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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

// upstream is one forwarding target with its sockets and its health state.
type upstream struct {
	addr netip.AddrPort
	name string

	mu   sync.Mutex
	idle []*udpSock // pooled UDP sockets (only with --udp-socket-reuse)
	tcp  tcpPool

	fails     atomic.Int32 // consecutive failures
	downUntil atomic.Int64 // unix ns; non-zero: unhealthy, probe due after it
	probing   atomic.Bool

	lat     *histogram
	errs    *counterVec
	queries *counter
}

// healthy reports whether the upstream should get queries at now.
func (u *upstream) healthy() bool { return u.downUntil.Load() == 0 }

// upstreamUDPBuf is the read buffer of one UDP try. Upstreams are asked
// for at most ourUDPSize bytes (512 without EDNS); a datagram that fills
// the buffer is more than that, so it is treated as truncated and retried
// over TCP. Kept just above ourUDPSize (1280 is the allocator's size class
// for it) because every query in flight holds one: 64 KiB buffers made RSS
// under a miss flood 30+ MiB, 4 KiB ones still cost 300 KiB per 100 misses
// in flight.
const upstreamUDPBuf = 1280

// maxTries bounds the tries of one exchange (and its result queue).
const maxTries = 32

// Forwarder sends queries upstream. Every UDP try has a socket (and so a
// source port) of its own; see udpsock.go.
type Forwarder struct {
	ups          []*upstream
	tryTimeout   time.Duration
	budget       time.Duration
	forceTCP     bool
	parallelAAAA bool
	reuse        int // queries per UDP socket; 0: a fresh socket per try
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
	// SocketReuse > 0 pools UDP sockets, each carrying at most that many
	// queries; 0 opens a fresh socket per try.
	SocketReuse int
	MaxIdle     int
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
		reuse:        cfg.SocketReuse,
		maxIdle:      max(1, cfg.MaxIdle),
		failLimit:    3,
		probeEvery:   5 * time.Second,
		serial:       serializer{m: map[string][]chan struct{}{}},
		log:          log,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
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

// Close releases pooled sockets and connections.
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
	if err := f.probeOnce(u, msg); err == nil || errors.Is(err, errTruncated) {
		f.markOK(u)
		f.log.Info("upstream healthy again", "upstream", u.name)
		return
	}
	u.downUntil.Store(time.Now().Add(f.probeEvery).UnixNano())
}

func (f *Forwarder) probeOnce(u *upstream, msg []byte) error {
	s, err := u.dialFresh()
	if err != nil {
		return err
	}
	defer s.c.Close()
	setID(msg)
	if _, err := s.c.Write(msg); err != nil {
		return err
	}
	_, err = f.readUDP(u, s, msg, time.Now().Add(f.tryTimeout))
	return err
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

// exchange is one resolution's set of tries. Tries that timed out keep
// listening until the budget ends, so a slow upstream's late reply is
// still taken while later tries go out (unbound's pending queries).
type exchange struct {
	f       *Forwarder
	msgs    [2][]byte // [0] with EDNS, [1] without; ID zero until sent
	sent    [2]bool   // msgs[i] went out as some try's own message
	results chan result

	mu    sync.Mutex
	tries []*try
	ended bool
}

// try is one query sent to one upstream.
type try struct {
	ex    *exchange
	u     *upstream
	idx   int // position in the exchange's upstream order
	edns  bool
	tcp   bool
	start time.Time
	// UDP: the socket and the query as sent (with its ID).
	sock *udpSock
	msg  []byte
	// TCP: the connection and ID the query is pending under.
	tcpConn *tcpConn
	tcpID   uint16

	timedOut  bool // counted as a timeout; a late reply is still taken
	delivered atomic.Bool
}

type result struct {
	t     *try
	reply []byte
	err   error
}

// background makes the result queue, before the first try that delivers
// from another goroutine (most exchanges never need it).
func (ex *exchange) background() {
	if ex.results == nil {
		ex.results = make(chan result, maxTries)
	}
}

func (ex *exchange) msg(edns bool) []byte {
	if edns {
		return ex.msgs[0]
	}
	return ex.msgs[1]
}

// deliver hands the try's outcome to the exchange, once.
func (t *try) deliver(reply []byte, err error) {
	if t.delivered.Swap(true) {
		return
	}
	select {
	case t.ex.results <- result{t: t, reply: reply, err: err}:
	default: // cannot happen: the queue holds maxTries
	}
}

// finish ends every try still listening: background UDP readers wake up
// and close their sockets, pipelined TCP queries are forgotten.
func (ex *exchange) finish() {
	ex.mu.Lock()
	ex.ended = true
	tries := ex.tries
	ex.mu.Unlock()
	for _, t := range tries {
		if t.delivered.Load() {
			continue
		}
		if t.tcpConn != nil {
			t.tcpConn.cancel(t.tcpID)
		} else if t.sock != nil {
			t.sock.c.SetReadDeadline(time.Now())
		}
	}
}

// Exchange resolves one question upstream and returns the raw reply. It
// tries upstreams in order, sending a new try every per-try timeout (at
// once after an error or an unusable reply) while earlier tries keep
// listening, until the total budget is spent. With serialization on, the
// first try of an A or AAAA query waits until the other type's try for
// that name has its answer or timed out.
func (f *Forwarder) Exchange(ctx context.Context, name []byte, qtype, qclass uint16, do, cd bool) ([]byte, error) {
	// The budget is a deadline checked by every wait below, not a
	// context.WithTimeout: that costs a context, a timer and a closure
	// (about 400 bytes of garbage) on every miss.
	deadline := time.Now().Add(f.budget)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ex := &exchange{f: f}
	// Both forms in one allocation; the full slice expression keeps an
	// append to the first from running into the second.
	buf := buildQuery(make([]byte, 0, 2*len(name)+52), name, qtype, qclass, do, cd, true)
	ex.msgs[0] = buf[:len(buf):len(buf)]
	ex.msgs[1] = buildQuery(buf[len(buf):], name, qtype, qclass, false, cd, false)
	defer ex.finish()
	var skey string
	if !f.parallelAAAA && (qtype == typeA || qtype == typeAAAA) {
		skey = string(name) + string([]byte{byte(qclass >> 8), byte(qclass)})
	}
	st := exState{order: f.order(), lastErr: ErrNoUpstream}
	st.useless = make([]bool, len(st.order))
	st.noEDNS = make([]bool, len(st.order))
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 0; attempt < maxTries; attempt++ {
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		spec, ok := st.nextSpec(f.forceTCP)
		if !ok {
			break
		}
		tryEnd := earlier(time.Now().Add(f.tryTimeout), deadline)
		t := &try{ex: ex, u: st.order[spec.idx], idx: spec.idx, edns: spec.edns, tcp: spec.tcp, start: time.Now()}
		// The first UDP try runs on this goroutine: most queries are
		// answered within it, and then no other goroutine is involved.
		inline := st.outstanding == 0 && !t.tcp
		release := false
		if inline && skey != "" && attempt == 0 {
			if err := f.serial.acquire(ctx, skey, deadline); err != nil {
				break
			}
			release = true
		}
		err := ex.start(t, tryEnd)
		if err != nil {
			if release {
				f.serial.release(skey)
			}
			st.failed(f, t, err)
			if reply, fin := st.pauseIfAllFailed(ctx, ex, &timer, f, tryEnd); fin {
				return reply, nil
			}
			continue
		}
		st.outstanding++
		if inline {
			reply, err := f.readUDP(t.u, t.sock, t.msg, tryEnd)
			if release {
				f.serial.release(skey)
			}
			if isTimeout(err) && time.Now().Before(deadline) {
				st.timeout(f, t)
				ex.listenLate(t, deadline)
				continue
			}
			t.delivered.Store(true)
			f.endUDP(t, err)
			if reply, fin := st.handle(f, result{t: t, reply: reply, err: err}); fin {
				return reply, nil
			}
			if reply, fin := st.pauseIfAllFailed(ctx, ex, &timer, f, tryEnd); fin {
				return reply, nil
			}
			continue
		}
		if !t.tcp {
			ex.listenLate(t, deadline)
		}
		// Wait for this try's timeout or any result, whichever is first.
		for {
			r, done := ex.wait(ctx, &timer, tryEnd)
			if !done {
				if ctx.Err() == nil && time.Now().Before(deadline) && !t.delivered.Load() {
					st.timeout(f, t)
				}
				break
			}
			reply, fin := st.handle(f, r)
			if fin {
				return reply, nil
			}
			if st.moveOn {
				break
			}
		}
	}
	// No more tries to send: take whatever the ones still listening bring.
	for st.outstanding > 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		r, done := ex.wait(ctx, &timer, deadline)
		if !done {
			break
		}
		if reply, fin := st.handle(f, r); fin {
			return reply, nil
		}
	}
	if st.servfail != nil {
		return st.servfail, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrNoUpstream, st.lastErr)
}

// wait returns the next result, or done=false at until or when ctx ends.
func (ex *exchange) wait(ctx context.Context, timer **time.Timer, until time.Time) (result, bool) {
	d := time.Until(until)
	if d <= 0 {
		select {
		case r := <-ex.results:
			return r, true
		default:
			return result{}, false
		}
	}
	if *timer == nil {
		*timer = time.NewTimer(d)
	} else {
		(*timer).Reset(d)
	}
	defer (*timer).Stop()
	select {
	case r := <-ex.results:
		return r, true
	case <-(*timer).C:
		return result{}, false
	case <-ctx.Done():
		return result{}, false
	}
}

// tryNext says where the next try goes.
type trySpec struct {
	idx  int
	edns bool
	tcp  bool
}

// exState is the bookkeeping of one Exchange.
type exState struct {
	order       []*upstream
	next        int
	useless     []bool // upstream gave an answer the client cannot use
	noEDNS      []bool // upstream said FORMERR to EDNS
	forced      *trySpec
	outstanding int
	quickFails  int  // tries in a row that failed without a timeout
	moveOn      bool // the last result asks for the next try now
	servfail    []byte
	lastErr     error
}

// nextSpec picks the next try: a forced one (TCP after TC, a retry
// without EDNS), else the next upstream in order that has not given an
// unusable answer.
func (st *exState) nextSpec(forceTCP bool) (trySpec, bool) {
	st.moveOn = false
	if st.forced != nil {
		s := *st.forced
		st.forced = nil
		return s, true
	}
	for range st.order {
		i := st.next % len(st.order)
		st.next++
		if !st.useless[i] {
			return trySpec{idx: i, edns: !st.noEDNS[i], tcp: forceTCP}, true
		}
	}
	return trySpec{}, false
}

// pauseIfAllFailed waits until tryEnd (or a result) once as many tries
// in a row as there are upstreams failed at once (e.g. ICMP port
// unreachable), rather than spin through the budget.
func (st *exState) pauseIfAllFailed(ctx context.Context, ex *exchange, timer **time.Timer, f *Forwarder, tryEnd time.Time) ([]byte, bool) {
	if st.quickFails < len(st.order) {
		return nil, false
	}
	st.quickFails = 0
	if r, done := ex.wait(ctx, timer, tryEnd); done {
		return st.handle(f, r)
	}
	return nil, false
}

// failed records a try that could not be sent or failed.
func (st *exState) failed(f *Forwarder, t *try, err error) {
	st.quickFails++
	st.lastErr = err
	if t.u.errs != nil {
		t.u.errs.inc(errReason(err))
	}
	f.markFail(t.u, err)
	st.moveOn = true
}

// timeout records a try that passed its per-try timeout; it keeps
// listening.
func (st *exState) timeout(f *Forwarder, t *try) {
	if t.timedOut {
		return
	}
	t.timedOut = true
	err := fmt.Errorf("%s: %w", t.u.name, errTimeout)
	st.lastErr = err
	if t.u.errs != nil {
		t.u.errs.inc("timeout")
	}
	f.markFail(t.u, err)
}

// handle processes one try's outcome; fin means reply is the answer.
func (st *exState) handle(f *Forwarder, r result) (reply []byte, fin bool) {
	st.outstanding--
	t := r.t
	if r.err != nil {
		switch {
		case errors.Is(r.err, errTruncated) && !t.tcp:
			// Retry over TCP at once, with the same EDNS setting.
			st.forced = &trySpec{idx: t.idx, edns: t.edns, tcp: true}
			st.moveOn = true
		case isTimeout(r.err) && t.timedOut:
			// A timed-out try that stopped listening: already counted.
		case errors.Is(r.err, errTCPClosed) && t.tcp && !t.timedOut:
			// The server closed a pooled connection with this query on it
			// (servers cap queries per connection; miekg/dns at 128): not
			// a failure of the upstream, ask it again on a new connection.
			st.forced = &trySpec{idx: t.idx, edns: t.edns, tcp: true}
			st.moveOn = true
		default:
			st.failed(f, t, r.err)
		}
		return nil, false
	}
	st.quickFails = 0
	f.markOK(t.u)
	if t.u.lat != nil {
		t.u.lat.observe(time.Since(t.start).Seconds())
	}
	st.moveOn = true
	switch rc := int(r.reply[3] & 0xF); rc {
	case rcodeFormErr:
		if t.edns {
			// An EDNS-intolerant upstream: ask it again without OPT.
			st.noEDNS[t.idx] = true
			st.forced = &trySpec{idx: t.idx, edns: false, tcp: t.tcp}
			return nil, false
		}
		st.unusable(t, rc, "formerr")
	case rcodeNotImp:
		st.unusable(t, rc, "notimp")
	case rcodeRefused:
		st.unusable(t, rc, "refused_rcode")
	case rcodeServFail:
		st.unusable(t, rc, "servfail")
		st.servfail = r.reply
	default:
		return r.reply, true
	}
	return nil, false
}

// unusable records an upstream whose answer blames the query or itself:
// the next upstream is asked; if none does better the client gets
// SERVFAIL, never a FORMERR/NOTIMP/REFUSED about a query it did not send.
func (st *exState) unusable(t *try, rc int, reason string) {
	st.useless[t.idx] = true
	st.lastErr = fmt.Errorf("%s answered rcode %d", t.u.name, rc)
	if t.u.errs != nil {
		t.u.errs.inc(reason)
	}
}

func isTimeout(err error) bool {
	if err == nil {
		return false // and no errors.As target escaping to the heap
	}
	if errors.Is(err, errTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
	case errors.Is(err, errTCPClosed):
		return "closed"
	default:
		return "other"
	}
}

func setID(msg []byte) { binary.BigEndian.PutUint16(msg, uint16(rand.Uint32())) }

// start sends try t: over UDP on a socket of its own, or pipelined on a
// pooled TCP connection.
func (ex *exchange) start(t *try, tryEnd time.Time) error {
	ex.mu.Lock()
	ex.tries = append(ex.tries, t)
	ex.mu.Unlock()
	if t.u.queries != nil {
		t.u.queries.inc()
	}
	if t.tcp {
		ex.background()
		return t.u.tcp.send(t.u, t, tryEnd)
	}
	s, err := t.u.getSock(ex.f.reuse)
	if err != nil {
		return err
	}
	// Each try has its own copy (its own ID, compared by its reader),
	// except the first of each form, which takes the template itself:
	// later tries copy it and set their own ID, nobody writes it again.
	form := 0
	if !t.edns {
		form = 1
	}
	if ex.sent[form] {
		t.msg = append([]byte(nil), ex.msg(t.edns)...)
	} else {
		ex.sent[form] = true
		t.msg = ex.msg(t.edns)
	}
	setID(t.msg)
	if _, err := s.c.Write(t.msg); err != nil {
		s.c.Close()
		return fmt.Errorf("send to %s: %w", t.u.name, err)
	}
	t.sock = s
	return nil
}

// listenLate keeps a timed-out UDP try listening until the budget ends.
func (ex *exchange) listenLate(t *try, deadline time.Time) {
	ex.mu.Lock()
	ended := ex.ended
	ex.mu.Unlock()
	if ended {
		return
	}
	ex.background()
	go func() {
		reply, err := ex.f.readUDP(t.u, t.sock, t.msg, deadline)
		ex.f.endUDP(t, err)
		t.deliver(reply, err)
	}()
}

// endUDP releases a finished UDP try's socket.
func (f *Forwarder) endUDP(t *try, err error) {
	if err == nil {
		t.u.putSock(t.sock, f.reuse, f.maxIdle)
	} else {
		// The socket may still receive a late reply; never reuse it.
		t.sock.c.Close()
	}
}

// readUDP waits on s for the reply to msg until deadline and returns a
// copy. Replies with the wrong ID or question are discarded.
func (f *Forwarder) readUDP(u *upstream, s *udpSock, msg []byte, deadline time.Time) ([]byte, error) {
	if err := s.c.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	for {
		n, err := s.c.Read(buf)
		if err != nil {
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
			return nil, err
		}
		return append([]byte(nil), buf[:n]...), nil
	}
}

// serializer makes queries for one key wait for each other, first come
// first served: a name whose first query keeps retrying must not starve
// the other type (each try releases the key and the next waiter goes).
type serializer struct {
	mu sync.Mutex
	// m holds the keys owned, each with its waiters in arrival order; a
	// waiter's channel is closed when ownership passes to it. Held by
	// value: an uncontended key allocates nothing.
	m map[string][]chan struct{}
}

// acquire blocks until key is ours (or ctx ends, or deadline passes);
// the owner calls release(key) when done.
func (s *serializer) acquire(ctx context.Context, key string, deadline time.Time) error {
	s.mu.Lock()
	waiters, busy := s.m[key]
	if !busy {
		s.m[key] = nil
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.m[key] = append(waiters, ch)
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = context.DeadlineExceeded
	}
	s.mu.Lock()
	waiters = s.m[key]
	for i, w := range waiters {
		if w == ch {
			s.m[key] = append(waiters[:i], waiters[i+1:]...)
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Unlock()
	// Ownership was handed over just as the wait ended: pass it on.
	s.release(key)
	return err
}

func (s *serializer) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	waiters := s.m[key]
	if len(waiters) == 0 {
		delete(s.m, key)
		return
	}
	next := waiters[0]
	s.m[key] = waiters[1:]
	close(next)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
