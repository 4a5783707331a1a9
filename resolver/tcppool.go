package resolver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Upstream TCP: connections are reused and queries pipelined on them
// (RFC 7766 §6.2.1), as CoreDNS pkg/proxy keeps persistent connections.
// One connection opened per query would leave a socket in TIME-WAIT for
// every miss, and a few hundred misses a second exhaust the ephemeral
// ports. Each upstream keeps at most tcpMaxConns connections; a query goes
// to the least busy one, a new connection is opened when all carry
// tcpBusy queries or more. Replies are matched to queries by ID (unique
// per connection) and question, in any order. A connection idle for
// tcpIdleClose is closed; one that fails is dropped with all its queries
// failed over, and the next query reconnects.

const (
	tcpMaxConns  = 4
	tcpBusy      = 32
	tcpIdleClose = 10 * time.Second
)

var errTCPClosed = errors.New("tcp connection closed")

// tcpPool is one upstream's set of connections.
type tcpPool struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when a dial ends
	conns   []*tcpConn
	dialing int
}

// tcpConn is one pipelined connection with its reader goroutine.
type tcpConn struct {
	pool *tcpPool
	u    *upstream
	c    net.Conn
	wmu  sync.Mutex // one framed write at a time

	mu      sync.Mutex
	pending map[uint16]*tcpQuery
	dead    bool
	idle    *time.Timer
}

// tcpQuery is one query waiting for its reply on a connection.
type tcpQuery struct {
	msg []byte // with its ID, for checkReply
	t   *try
}

// send pipelines msg (its ID is chosen here) to u over a pooled
// connection; the result goes to t's exchange. It blocks only to dial.
func (p *tcpPool) send(u *upstream, t *try, deadline time.Time) error {
	for retry := 0; ; retry++ {
		tc, err := p.pick(u, deadline)
		if err != nil {
			return err
		}
		err = tc.send(t)
		if err == nil {
			return nil
		}
		// A pooled connection the server closed meanwhile: once more on a
		// fresh one.
		if retry > 0 || !errors.Is(err, errTCPClosed) {
			return err
		}
	}
}

// pick returns the least busy live connection, dialling a new one when
// every connection is busy and the pool has room. Dials in progress count
// against the bound, so a burst of misses does not open a connection each.
func (p *tcpPool) pick(u *upstream, deadline time.Time) (*tcpConn, error) {
	p.mu.Lock()
	if p.cond == nil {
		p.cond = sync.NewCond(&p.mu)
	}
	for {
		var best *tcpConn
		bestN := 0
		for _, c := range p.conns {
			c.mu.Lock()
			n, dead := len(c.pending), c.dead
			c.mu.Unlock()
			if dead {
				continue
			}
			if best == nil || n < bestN {
				best, bestN = c, n
			}
		}
		room := len(p.conns)+p.dialing < tcpMaxConns
		if best != nil && (bestN < tcpBusy || !room) {
			p.mu.Unlock()
			return best, nil
		}
		if room {
			break
		}
		// Every slot is taken by dials in progress (a burst at start):
		// wait for one of them, each bounded by its deadline.
		p.cond.Wait()
	}
	p.dialing++
	p.mu.Unlock()
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", u.addr.String())
	p.mu.Lock()
	p.dialing--
	p.cond.Broadcast()
	if err != nil {
		p.mu.Unlock()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil, fmt.Errorf("tcp %s: %w", u.name, errTimeout)
		}
		return nil, fmt.Errorf("tcp dial %s: %w", u.name, err)
	}
	tc := &tcpConn{pool: p, u: u, c: c, pending: map[uint16]*tcpQuery{}}
	p.conns = append(p.conns, tc)
	p.mu.Unlock()
	go tc.read()
	return tc, nil
}

func (tc *tcpConn) send(t *try) error {
	tc.mu.Lock()
	if tc.dead {
		tc.mu.Unlock()
		return errTCPClosed
	}
	var id uint16
	for {
		id = uint16(rand.Uint32())
		if _, busy := tc.pending[id]; !busy {
			break
		}
	}
	msg := append([]byte(nil), t.ex.msg(t.edns)...)
	binary.BigEndian.PutUint16(msg, id)
	tc.pending[id] = &tcpQuery{msg: msg, t: t}
	if tc.idle != nil {
		tc.idle.Stop()
	}
	tc.mu.Unlock()
	t.tcpConn, t.tcpID = tc, id

	out := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	out = append(out, msg...)
	tc.wmu.Lock()
	tc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := tc.c.Write(out)
	tc.wmu.Unlock()
	if err != nil {
		tc.cancel(id)
		tc.fail()
		return fmt.Errorf("tcp send to %s: %w: %w", tc.u.name, errTCPClosed, err)
	}
	return nil
}

// cancel forgets a query whose exchange ended.
func (tc *tcpConn) cancel(id uint16) {
	tc.mu.Lock()
	delete(tc.pending, id)
	tc.armIdle()
	tc.mu.Unlock()
}

// armIdle starts the idle close timer when nothing is pending. tc.mu held.
func (tc *tcpConn) armIdle() {
	if len(tc.pending) > 0 || tc.dead {
		return
	}
	if tc.idle == nil {
		tc.idle = time.AfterFunc(tcpIdleClose, tc.closeIfIdle)
	} else {
		tc.idle.Reset(tcpIdleClose)
	}
}

func (tc *tcpConn) closeIfIdle() {
	tc.mu.Lock()
	idle := len(tc.pending) == 0
	tc.mu.Unlock()
	if idle {
		tc.fail()
	}
}

// fail closes the connection, removes it from the pool and fails over
// every query still waiting on it.
func (tc *tcpConn) fail() {
	tc.mu.Lock()
	if tc.dead {
		tc.mu.Unlock()
		return
	}
	tc.dead = true
	pend := tc.pending
	tc.pending = nil
	if tc.idle != nil {
		tc.idle.Stop()
	}
	tc.mu.Unlock()
	tc.c.Close()
	p := tc.pool
	p.mu.Lock()
	for i, c := range p.conns {
		if c == tc {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	for _, q := range pend {
		q.t.deliver(nil, fmt.Errorf("tcp %s: %w", tc.u.name, errTCPClosed))
	}
}

// read dispatches replies to their queries until the connection fails.
func (tc *tcpConn) read() {
	br := bufio.NewReaderSize(tc.c, 1024)
	for {
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			tc.fail()
			return
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			tc.fail()
			return
		}
		if len(b) < 2 {
			continue
		}
		id := binary.BigEndian.Uint16(b)
		tc.mu.Lock()
		q := tc.pending[id]
		var err error
		if q != nil {
			err = checkReply(b, q.msg)
			if !errors.Is(err, errMismatch) {
				delete(tc.pending, id)
				tc.armIdle()
			}
		}
		tc.mu.Unlock()
		switch {
		case q == nil, errors.Is(err, errMismatch):
			// A reply to a query given up on, or a stray: keep reading.
		case errors.Is(err, errTruncated):
			// TC over TCP cannot be repaired by retrying here: an error,
			// failed over and never cached.
			q.t.deliver(nil, fmt.Errorf("tcp %s: %w", tc.u.name, err))
		case err != nil:
			q.t.deliver(nil, err)
		default:
			q.t.deliver(b, nil)
		}
	}
}

// closeAll closes every connection (shutdown).
func (p *tcpPool) closeAll() {
	p.mu.Lock()
	conns := append([]*tcpConn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		c.fail()
	}
}

// conns counts live connections (tests).
func (p *tcpPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
