package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ParseLevel maps debug/info/warn/error to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level (want debug, info, warn or error)")
}

// rateLimitedLogger lets at most burst records through per window and
// reports how many it suppressed, so a flood of bad packets or a dead
// upstream cannot turn the log into the bottleneck. It keeps no timer:
// the window is checked when a record arrives.
type rateLimitedLogger struct {
	log        *slog.Logger
	burst      int
	window     time.Duration
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

func newRateLimitedLogger(l *slog.Logger, burst int, window time.Duration) *rateLimitedLogger {
	return &rateLimitedLogger{log: l, burst: burst, window: window}
}

func (r *rateLimitedLogger) logAt(level slog.Level, msg string, args ...any) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.start) >= r.window {
		if r.suppressed > 0 {
			r.log.Warn("log records suppressed", "count", r.suppressed, "window", r.window)
		}
		r.start, r.n, r.suppressed = now, 0, 0
	}
	r.n++
	ok := r.n <= r.burst
	if !ok {
		r.suppressed++
	}
	r.mu.Unlock()
	if ok {
		r.log.Log(context.Background(), level, msg, args...)
	}
}

func (r *rateLimitedLogger) Warn(msg string, args ...any)  { r.logAt(slog.LevelWarn, msg, args...) }
func (r *rateLimitedLogger) Error(msg string, args ...any) { r.logAt(slog.LevelError, msg, args...) }
