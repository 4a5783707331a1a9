package resolver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

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
	ex   *exchange
	u    *upstream
	idx  int // position in the exchange's upstream order
	edns bool
	tcp  bool
	// fresh: a retry after a timeout, sent from a new socket (see
	// upstream.dropIdle).
	fresh bool
	start time.Time
	// UDP: the socket and the query as sent (with its ID).
	sock *udpSock
	msg  []byte
	// TCP: the connection and ID the query is pending under.
	tcpConn *tcpConn
	tcpID   uint16

	timedOut  bool // outlived its per-try timeout; a late reply is still taken
	outcome   bool // handled and counted (settle skips it)
	answered  bool // its upstream replied on it
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
// tries upstreams in order, sending a new try when the last one's per-try
// timeout passes (at once after an error or an unusable reply) while
// earlier tries keep listening, until the total budget is spent. The
// per-try timeout adapts to the upstream's measured round-trip time and
// backs off after the first timed-out tries of the exchange (rto.go). With
// serialization on, the first try of an A or AAAA query waits until the
// other type's try for that name has its answer or passed that timeout.
func (f *Forwarder) Exchange(ctx context.Context, name []byte, qtype, qclass uint16, do, cd bool) (_ []byte, err error) {
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
	// The two per-upstream flags in one allocation.
	n := len(st.order)
	flags := make([]bool, 2*n)
	st.useless, st.noEDNS = flags[:n:n], flags[n:]
	// Before finish (deferred first, so run last): a try that got no
	// answer while the exchange lasted is a timeout for health.
	defer func() { st.settle(f, ex, err != nil) }()
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
		tryEnd := earlier(time.Now().Add(f.tryTimeout(st.order[spec.idx], st.timeouts)), deadline)
		t := &try{ex: ex, u: st.order[spec.idx], idx: spec.idx, edns: spec.edns, tcp: spec.tcp, fresh: st.timeouts > 0, start: time.Now()}
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
