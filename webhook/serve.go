package webhook

import (
	"context"
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

// Serve serves HTTPS on ln until ctx ends, then stops accepting at once and
// lets requests in flight finish (at most grace). The API server does not
// retry a refused call on another replica, so a webhook behind a Service
// uses ServeDrained instead; Serve is for tests and local runs.
func Serve(ctx context.Context, hs *http.Server, ln net.Listener, grace time.Duration) error {
	return ServeDrained(ctx, hs, ln, nil, Drain{Timeout: grace}, slog.New(slog.DiscardHandler))
}
