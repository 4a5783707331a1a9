package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

func (s *Server) httpError(w http.ResponseWriter, code int, format string, args ...any) {
	s.metrics.HTTPErrors.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), fmt.Sprintf(format, args...))
	// Most errors answer before the request body is read. Over HTTP/2 the
	// server then resets the stream when the handler returns, and its
	// write scheduler sends that RST_STREAM ahead of a response still
	// buffered: the client gets the status but not the message (curl:
	// "transfer closed with 88 bytes remaining"). Flushing waits until the
	// message is on the wire.
	_ = http.NewResponseController(w).Flush()
}

// writeJSON answers 200 with v encoded by encoding/json.
func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for the answer types; stay safe anyway
		s.httpError(w, http.StatusInternalServerError, "encoding the answer: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	_, _ = w.Write(append(b, '\n')) // the client went away; nothing useful to do
}
