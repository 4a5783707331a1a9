package resolver

import (
	"context"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// detachGrace is how long a detached socket must stay quiet (empty queue,
// no reply pending) before it is closed; detachMax bounds the whole wait.
const (
	detachGrace = 20 * time.Millisecond
	detachMax   = 2 * time.Second
)

// reusePort sets SO_REUSEPORT before bind, so a second resolver (the next
// version during a rolling upgrade) can bind the same address and the
// kernel spreads queries over both until the old one leaves.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// detach stops the kernel from delivering new datagrams to a UDP socket in
// a SO_REUSEPORT group without closing it: a connected UDP socket only
// matches datagrams from its peer, and Linux leaves connected sockets out
// of the reuseport choice, so new queries go to the other members while
// the datagrams already queued here can still be read and answered
// (sendmsg with an address works on a connected UDP socket). The peer is
// the discard port on loopback, which never sends anything.
func detach(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		la, _ := c.LocalAddr().(*net.UDPAddr)
		if la != nil && la.IP.To4() == nil {
			_ = unix.Connect(int(fd), &unix.SockaddrInet6{Port: 9, Addr: [16]byte{15: 1}})
			return
		}
		_ = unix.Connect(int(fd), &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
	})
}

// queued returns the size of the next datagram waiting on c (0: none).
func queued(c *net.UDPConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n
}

// drainDetached waits until the detached sockets have nothing queued and
// no miss is waiting to send its reply, for detachGrace in a row (a reader
// may hold a batch it has read but not answered yet), bounded by detachMax
// and ctx. A fixed sleep lost queries on a loaded machine.
func (s *Server) drainDetached(ctx context.Context) {
	end := time.Now().Add(detachMax)
	quietSince := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		busy := s.udpPending.Load() > 0
		for _, l := range s.lns {
			if queued(l.udp) > 0 {
				busy = true
			}
		}
		if busy {
			quietSince = time.Now()
		} else if time.Since(quietSince) >= detachGrace {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
