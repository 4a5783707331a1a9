package resolver

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
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
	rtt       rttEstimator // sets the per-try timeout (rto.go)

	m *upstreamMetrics // nil without metrics
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
	minTimeout   time.Duration // floor of the adaptive per-try timeout
	maxTimeout   time.Duration // its ceiling (--timeout)
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
	Upstreams []netip.AddrPort
	// MinTryTimeout and MaxTryTimeout bound the per-try timeout, which
	// adapts to each upstream's measured round-trip time (rto.go).
	MinTryTimeout time.Duration
	MaxTryTimeout time.Duration
	Budget        time.Duration
	ForceTCP      bool
	ParallelAAAA  bool
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
		minTimeout:   cfg.MinTryTimeout,
		maxTimeout:   cfg.MaxTryTimeout,
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
			u.m = m.upstream(u.name, func() time.Duration { return f.tryTimeout(u, 0) })
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
