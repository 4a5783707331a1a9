package resolver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Drain marks the server not ready (readyz fails) while it keeps answering.
func (s *Server) Drain() { s.draining.Store(true) }

// AwaitDrain marks the server draining and keeps it answering for at most
// max, returning early once no client query has arrived for idle (idle 0:
// never early) or when interrupt delivers. It says which ended it: "drain",
// "idle" or "interrupted".
//
// The idle rule exists for the sidecar: a native sidecar gets SIGTERM only
// after every app container has exited, so nobody is left to ask and a
// full drain only holds the pod in Terminating (or, with a short
// terminationGracePeriodSeconds, gets the resolver SIGKILLed). Where clients
// still send queries (node mode while endpoints move) it waits the full max.
func (s *Server) AwaitDrain(max, idle time.Duration, interrupt <-chan os.Signal) string {
	s.Drain()
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	var tick <-chan time.Time
	if idle > 0 && idle < max {
		t := time.NewTicker(min(idle/4, 100*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	seen, quietSince := s.queriesReceived(), time.Now()
	for {
		select {
		case <-deadline.C:
			return "drain"
		case <-interrupt:
			return "interrupted"
		case now := <-tick:
			if n := s.queriesReceived(); n != seen {
				seen, quietSince = n, now
			} else if now.Sub(quietSince) >= idle {
				return "idle"
			}
		}
	}
}

// queriesReceived counts client queries over UDP and TCP so far.
func (s *Server) queriesReceived() uint64 {
	return s.metrics.queries[0].v.Load() + s.metrics.queries[1].v.Load()
}

// Shutdown stops listening, waits for in-flight answers (bounded by ctx)
// and releases upstream sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.closing.Store(true)
	var errs []error
	for _, l := range s.lns {
		errs = append(errs, l.tcp.Close())
	}
	if s.cfg.reusePort() && len(s.lns) > 0 {
		// Closing a socket drops the datagrams queued on it; in a
		// SO_REUSEPORT group those are queries a successor would have
		// answered. Detach first, let the readers empty the queue, then
		// close.
		for _, l := range s.lns {
			detach(l.udp)
		}
		s.drainDetached(ctx)
	}
	for _, l := range s.lns {
		errs = append(errs, l.udp.Close())
	}
	if s.health != nil {
		errs = append(errs, s.health.shutdown(ctx))
	}
	if s.metricz != nil {
		errs = append(errs, s.metricz.shutdown(ctx))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("shutdown: %w", ctx.Err()))
	}
	for _, f := range s.forwarders() {
		f.Close()
	}
	return errors.Join(errs...)
}

// udpBatch is how many datagrams one recvmmsg/sendmmsg call moves. Under
// load most of a cache hit's cost is the two system calls; batching
// amortises them (on other systems x/net falls back to one at a time).
const udpBatch = 16

// maxQuerySize bounds a UDP query read (a stub's query is under 300 bytes).
const maxQuerySize = 4096
