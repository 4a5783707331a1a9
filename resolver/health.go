package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// healthServer serves /healthz, /readyz and /metrics over plain HTTP on a
// loopback port (kubelet probes use `resolver probe` instead, since
// httpGet probes target the pod IP).
type healthServer struct {
	ln  net.Listener
	srv *http.Server
}

func newHealthServer(s *Server, addr string) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !s.ready.Load():
			http.Error(w, "starting", http.StatusServiceUnavailable)
		default:
			fmt.Fprintf(w, "ok: %d/%d upstreams healthy\n", s.fwd.Healthy(), len(s.fwd.ups))
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.WriteTo(w)
	})
	h := &healthServer{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}}
	go func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("health server stopped", "err", err)
		}
	}()
	return h, nil
}

func (h *healthServer) shutdown(ctx context.Context) error {
	if err := h.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("health server shutdown: %w", err)
	}
	return nil
}
