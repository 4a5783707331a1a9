package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// setID gives the query a random ID (RFC 5452), for each try anew.
func setID(msg []byte) { binary.BigEndian.PutUint16(msg, uint16(rand.Uint32())) }

// start sends try t: over UDP on a socket of its own, or pipelined on a
// pooled TCP connection.
func (ex *exchange) start(t *try, tryEnd time.Time) error {
	ex.mu.Lock()
	ex.tries = append(ex.tries, t)
	ex.mu.Unlock()
	t.u.countQuery()
	if t.tcp {
		ex.background()
		return t.u.tcp.send(t.u, t, tryEnd)
	}
	reuse := ex.f.reuse
	if t.fresh {
		reuse = 1
	}
	s, err := t.u.getSock(reuse)
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
