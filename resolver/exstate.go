package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// trySpec says where the next try goes.
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
	timeouts    int    // tries that outlived their per-try timeout
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
	t.outcome = true
	st.quickFails++
	st.lastErr = err
	t.u.countErr(errReason(err))
	f.markFail(t.u, err)
	st.moveOn = true
}

// timeout records a try that passed its per-try timeout: the next try
// goes out (a retransmit) while this one keeps listening. It is not a
// failure of the upstream yet: the per-try timeout is short, and a slow
// answer must not count against health. settle decides when the
// exchange ends.
func (st *exState) timeout(f *Forwarder, t *try) {
	if t.timedOut {
		return
	}
	t.timedOut = true
	st.timeouts++
	st.lastErr = fmt.Errorf("%s: %w", t.u.name, errTimeout)
	t.u.countRetransmit()
	if !t.tcp {
		t.u.dropIdle()
	}
}

// settle runs when the exchange ends: each try that got nothing at all
// while it lasted, and either passed its per-try timeout or belongs to an
// exchange that failed, is a timeout (counted with reason "timeout"), and
// a failure of its upstream unless that upstream answered another try of
// this exchange (then a packet was lost, and the upstream is alive). A
// try answered by another one before its own timeout, or sent after a try
// its upstream answered, is not counted.
// Results already queued but not handled count as what they are.
func (st *exState) settle(f *Forwarder, ex *exchange, failed bool) {
	if ex.results != nil {
		for drained := false; !drained; {
			select {
			case r := <-ex.results:
				if r.err == nil || !isTimeout(r.err) {
					r.t.outcome = true
				}
			default:
				drained = true
			}
		}
	}
	ex.mu.Lock()
	tries := ex.tries
	ex.mu.Unlock()
	for i, t := range tries {
		// A try sent after an answered one is not a loss, whatever its
		// timer said: it was a retransmission to an upstream slower than
		// its timeout, and its answer would have come after the one taken.
		if t.outcome || !t.timedOut && !failed || answeredBy(tries[:i], t.idx) {
			continue
		}
		t.u.countErr("timeout")
		if !answeredBy(tries, t.idx) {
			f.markFail(t.u, fmt.Errorf("%s: %w", t.u.name, errTimeout))
		}
	}
}

// answeredBy reports whether upstream idx answered one of tries.
func answeredBy(tries []*try, idx int) bool {
	for _, e := range tries {
		if e.idx == idx && e.answered {
			return true
		}
	}
	return false
}

// handle processes one try's outcome; fin means reply is the answer.
func (st *exState) handle(f *Forwarder, r result) (reply []byte, fin bool) {
	st.outstanding--
	t := r.t
	// Every outcome is counted here, except a timed-out try that stopped
	// listening: settle counts it.
	t.outcome = !(isTimeout(r.err) && t.timedOut)
	if r.err != nil {
		switch {
		case errors.Is(r.err, errTruncated) && !t.tcp:
			// Retry over TCP at once, with the same EDNS setting.
			st.forced = &trySpec{idx: t.idx, edns: t.edns, tcp: true}
			st.moveOn = true
		case isTimeout(r.err) && t.timedOut:
			// A timed-out try that stopped listening: settle counts it.
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
	t.answered = true
	// Unambiguous even for a retransmitted-over try (Karn's rule holds:
	// the answer came on this try's own socket, with its own ID).
	rtt := time.Since(t.start)
	t.u.rtt.sample(rtt)
	t.u.observe(rtt)
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
	t.u.countErr(reason)
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
