package webhook

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"time"
)

// readJSONBody enforces POST, a JSON Content-Type, the size limit and the
// byte budget, and returns the body with the budget it holds (release it
// when done with the body); on failure it has already answered.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, int64, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.httpError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s; use POST", r.Method, r.URL.Path)
		return nil, 0, false
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		s.httpError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
		return nil, 0, false
	}
	limit := s.maxBody()
	if r.ContentLength > limit {
		s.httpError(w, http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
		return nil, 0, false
	}
	// A declared size that cannot fit now is shed before a byte is read:
	// reading (and decrypting) a body only to refuse it would spend the CPU
	// that ordinary reviews and probes need.
	if r.ContentLength > firstBodyChunk && !s.budget.fits((r.ContentLength+1+firstBodyChunk)*bodyCostFactor) {
		s.shed(w)
		return nil, 0, false
	}
	// A body that trickles in holds its connection and its budget; bound
	// the whole read, whatever the server-wide timeouts are.
	if t := s.cfg.BodyReadTimeout; t > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(t))
	}
	body, charged, err := s.readBudgeted(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	if err != nil {
		s.budget.release(charged)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			s.httpError(w, http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes", limit)
		case errors.Is(err, errOverBudget):
			s.shed(w)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			s.httpError(w, http.StatusRequestTimeout, "body not received within %s", s.cfg.BodyReadTimeout)
		default:
			s.httpError(w, http.StatusBadRequest, "reading body: %v", err)
		}
		return nil, 0, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.budget.release(charged)
		s.httpError(w, http.StatusBadRequest, "empty body; expected JSON")
		return nil, 0, false
	}
	return body, charged, true
}

func (s *Server) maxBody() int64 {
	if s.cfg.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return s.cfg.MaxRequestBytes
}

// shed answers 429: the API server retries after Retry-After (and
// otherwise applies the webhook's failurePolicy). The connection is closed
// so the server does not read the rest of the body to reuse it.
func (s *Server) shed(w http.ResponseWriter) {
	s.metrics.Shed.Inc()
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	s.httpError(w, http.StatusTooManyRequests, "too many request bytes in flight (budget %d bytes); retry later", s.budget.total)
}

var errOverBudget = errors.New("request byte budget exhausted")

// firstBodyChunk is the buffer a body is first read into: a whole ordinary
// review, while a stalled client that sent headers only pins nothing.
const firstBodyChunk = 32 << 10

// readBudgeted reads body, charging the byte budget before each buffer is
// allocated, so the memory pinned by bodies (complete or still trickling
// in) never exceeds the budget. It returns the bytes charged, also on error.
func (s *Server) readBudgeted(body io.Reader, contentLength int64) ([]byte, int64, error) {
	var charged int64
	grow := func(buf []byte, size int64) ([]byte, error) {
		// The old buffer stays charged: it is garbage, but it is memory
		// until the next collection.
		if !s.budget.acquire(size * bodyCostFactor) {
			return buf, errOverBudget
		}
		charged += size * bodyCostFactor
		nb := make([]byte, len(buf), size)
		copy(nb, buf)
		return nb, nil
	}
	size := int64(firstBodyChunk)
	if contentLength >= 0 && contentLength < size {
		size = contentLength + 1 // room to see EOF without growing
	}
	buf, err := grow(nil, size)
	if err != nil {
		return nil, charged, err
	}
	for {
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, charged, nil
		}
		if err != nil {
			return nil, charged, err
		}
		if len(buf) < cap(buf) {
			continue
		}
		if contentLength >= 0 && int64(len(buf)) == contentLength {
			continue // complete; the next read returns EOF
		}
		next := int64(cap(buf)) * 2
		if contentLength > int64(cap(buf)) {
			next = contentLength + 1 // the size is declared: one allocation
		}
		if next > s.maxBody()+1 {
			next = s.maxBody() + 1 // MaxBytesReader fails beyond that
		}
		if buf, err = grow(buf, next); err != nil {
			return nil, charged, err
		}
	}
}
