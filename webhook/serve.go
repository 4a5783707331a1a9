package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// NewHTTPServer wraps h in an HTTPS server taking its certificate from
// certs, with timeouts that keep slow or stuck clients from piling up.
func NewHTTPServer(h http.Handler, certs *CertReloader, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	hs := &http.Server{
		Handler:   h,
		TLSConfig: certs.TLSConfig(),
		// Stalled clients: 5 s for the TLS handshake and the headers, then
		// the handler bounds the body (Config.BodyReadTimeout).
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(func() { log.Info("shutting down: draining connections") })
	return hs
}

// Serve serves HTTPS on ln until ctx ends, then shuts down gracefully:
// it stops accepting, lets requests in flight finish (at most grace), and
// closes idle keep-alive connections. The API server retries on another
// replica meanwhile.
func Serve(ctx context.Context, hs *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
