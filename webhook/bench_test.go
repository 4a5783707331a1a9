package webhook

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// BenchmarkServeMutate measures one /mutate round through the handler
// (decode, decide, patch, encode) without TLS, to see where the request
// path spends its time: go test -bench ServeMutate -cpuprofile cpu.out.
func BenchmarkServeMutate(b *testing.B) {
	body, err := os.ReadFile("testdata/clusterfirst-deployment-pod.json")
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Nameservers = []string{"10.96.0.10"}
	s := NewServer(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
