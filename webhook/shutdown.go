package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Default drain timings (see Drain).
const (
	DefaultShutdownDelay   = 10 * time.Second
	DefaultShutdownTimeout = 20 * time.Second
)

// Drain is how the webhook stops. The API server does not retry a failed
// admission call on another replica: a refused connection means the pod is
// admitted unpatched (failurePolicy Ignore) or rejected (Fail). Endpoint
// removal reaches every API server and kube-proxy only some seconds after
// the kubelet sends SIGTERM, so the listener must keep accepting through
// that window, not just finish what is in flight.
type Drain struct {
	// Delay: after the stop signal /readyz fails at once, every HTTP/1.1
	// response carries Connection: close (so clients reconnect through the
	// updated endpoints) and the listener keeps serving new and in-flight
	// requests for this long.
	Delay time.Duration
	// Timeout bounds http.Server.Shutdown after Delay: requests still in
	// flight get this long to finish before connections are closed.
	Timeout time.Duration
}

// ReadinessGate fails /readyz once draining has begun and passes every
// request (including /readyz before that) to the wrapped handler.
type ReadinessGate struct {
	next     http.Handler
	draining atomic.Bool
}

// NewReadinessGate wraps next.
func NewReadinessGate(next http.Handler) *ReadinessGate { return &ReadinessGate{next: next} }

// StartDraining makes /readyz fail from now on.
func (g *ReadinessGate) StartDraining() { g.draining.Store(true) }

// ServeHTTP answers /readyz with 503 while draining, and while draining
// asks HTTP/1.1 clients to close the connection after the response.
//
// That is the only safe way to retire an HTTP/1.1 keep-alive connection
// from the server side: closing an idle one (what
// http.Server.SetKeepAlivesEnabled(false) does) races a client that has
// just taken it from its pool, and the API server does not retry a POST
// that failed that way ("write: broken pipe") — the pod is admitted
// unpatched. HTTP/2 connections get a graceful GOAWAY from Shutdown
// instead (a Connection header is not allowed there).
func (g *ReadinessGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/readyz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: shutting down (draining)")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// ServeDrained serves HTTPS on ln until ctx ends, then drains as d says:
// readiness fails, the listener serves on for d.Delay, and Shutdown waits at
// most d.Timeout for requests in flight. gate may be nil (no readiness).
func ServeDrained(ctx context.Context, hs *http.Server, ln net.Listener, gate *ReadinessGate, d Drain, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if gate != nil {
		gate.StartDraining()
	} else {
		// No gate to close connections one response at a time; this
		// closes idle ones at once (racing clients that reuse them).
		hs.SetKeepAlivesEnabled(false)
	}
	log.Info("stop requested: readiness failing, still serving while endpoints are removed", "delay", d.Delay.String(), "timeout", d.Timeout.String())
	if d.Delay > 0 {
		t := time.NewTimer(d.Delay)
		select {
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("serve: %w", err)
		case <-t.C:
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), d.Timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
