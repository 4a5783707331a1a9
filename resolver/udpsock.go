package resolver

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

// Source ports of upstream UDP queries (RFC 5452 §9.2; unbound
// services/outside_network.c opens a socket on a random port for every
// query).
//
// A fresh socket (--udp-socket-reuse=1, or whenever no pooled one may be
// used) is connect()ed to the upstream:
// Linux binds it to a random free port of the ephemeral range
// (ip_local_port_range), and a port is never handed to a second socket
// while the first holds it, so no two queries in flight share a port. The
// socket is closed when the try ends. On top of that the forwarder refuses
// a port used by any of the last recentPorts upstream queries of the
// process (it opens another socket first, then closes the refused one), so
// A and AAAA for one name, sent one after the other, never leave from the
// same port, and a pod's consecutive queries never pin one conntrack entry.
//
// With --udp-socket-reuse=N > 1 (default 8), a socket whose try got a clean answer is
// pooled (up to --max-idle-sockets per upstream) and may carry up to N
// queries in all; a try takes a random idle socket whose port is not among
// the recent ones, else opens a fresh one. The same guarantees hold (one
// query per socket at a time, no port within recentPorts queries); a port
// just lives for up to N queries instead of one. make bench measured a
// cache miss at about 60 µs of CPU pooled against 100 µs with a fresh
// socket per query (socket, connect, getsockname, epoll add/remove and
// close are most of the difference), hence the default.

// recentPorts is how many past source ports a fresh socket must avoid.
const recentPorts = 64

// portRing remembers the source ports of the last recentPorts queries.
type portRing struct {
	mu    sync.Mutex
	ports [recentPorts]uint16
	next  int
}

// recent is shared by every forwarder of the process: a node-mode resolver
// has two groups, and a port must not repeat across them either.
var recent portRing

// claim records p and reports true when p was not among the recent ports.
func (r *portRing) claim(p uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.ports {
		if q == p {
			return false
		}
	}
	r.ports[r.next] = p
	r.next = (r.next + 1) % recentPorts
	return true
}

// udpSock is one upstream UDP socket.
type udpSock struct {
	c    *net.UDPConn
	port uint16
	uses int
}

func localPort(c *net.UDPConn) uint16 {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

// dialFresh opens a connected socket on a port none of the recent queries
// used.
func (u *upstream) dialFresh() (*udpSock, error) {
	var refused []*net.UDPConn
	defer func() {
		for _, c := range refused {
			c.Close()
		}
	}()
	// A handful of attempts: each is a new random port, and the refused
	// sockets stay open meanwhile so the kernel cannot return their ports.
	for range 8 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.addr))
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", u.name, err)
		}
		if p := localPort(c); recent.claim(p) {
			return &udpSock{c: c, port: p}, nil
		}
		refused = append(refused, c)
	}
	return nil, fmt.Errorf("dial %s: no fresh source port after 8 attempts", u.name)
}

// getSock returns the socket for one try. With reuse > 1 a random idle
// socket is taken when its port is not among the recent ones (a few random
// picks), else a fresh one is opened.
func (u *upstream) getSock(reuse int) (*udpSock, error) {
	if reuse > 1 {
		u.mu.Lock()
		for range 4 {
			n := len(u.idle)
			if n == 0 {
				break
			}
			i := rand.IntN(n)
			s := u.idle[i]
			if recent.claim(s.port) {
				u.idle[i] = u.idle[n-1]
				u.idle = u.idle[:n-1]
				u.mu.Unlock()
				return s, nil
			}
		}
		u.mu.Unlock()
	}
	return u.dialFresh()
}

// putSock ends a try whose socket saw a clean answer: pooled when reuse
// allows, closed otherwise.
func (u *upstream) putSock(s *udpSock, reuse, maxIdle int) {
	s.uses++
	if reuse > 1 && s.uses < reuse {
		u.mu.Lock()
		if len(u.idle) < maxIdle {
			u.idle = append(u.idle, s)
			s = nil
		}
		u.mu.Unlock()
	}
	if s != nil {
		s.c.Close()
	}
}

// dropIdle closes the upstream's idle UDP sockets after one of its tries
// timed out. Behind a Service IP each pooled socket's 5-tuple is pinned by
// its conntrack entry to the endpoint it was first balanced to; when that
// endpoint goes (a CoreDNS rollout), every pooled socket pinned to it
// loses its queries until kube-proxy clears the entries. Measured on the
// node, fault matrix (d): with the pool kept, glibc lookups through the
// sidecar lost four tries in a row (620 ms, 1.37 s with an earlier try
// schedule) while the Kubernetes default, a new socket per lookup, lost
// none. Fresh sockets are balanced afresh; a retry always takes one (try.fresh).
func (u *upstream) dropIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, s := range idle {
		s.c.Close()
	}
}

func (u *upstream) closeIdle() {
	u.dropIdle()
	u.tcp.closeAll()
}
