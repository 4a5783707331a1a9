package webhook

import (
	"log/slog"
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
