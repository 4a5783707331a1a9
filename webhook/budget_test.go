package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestByteBudget(t *testing.T) {
	const total = 4 << 20
	small := int64(smallCharge)
	tests := []struct {
		name  string
		held  []int64 // acquired first, all must succeed
		try   int64
		allow bool
	}{
		{"empty budget takes a big charge", nil, 3 << 20, true},
		{"big charge may not eat the reserve", nil, 3<<20 + 1, false},
		{"big charges share three quarters", []int64{2 << 20}, 1<<20 + 1, false},
		{"small charge uses the reserve", []int64{3 << 20}, small, true},
		{"reserve itself is bounded", []int64{3 << 20, small, small, small, small, small}, small, false},
		{"zero is always free", []int64{3 << 20, small, small, small, small, small}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newByteBudget(total)
			for _, h := range tt.held {
				if !b.acquire(h) {
					t.Fatalf("setup: acquire(%d) failed with %d in use", h, b.inUse())
				}
			}
			if got := b.acquire(tt.try); got != tt.allow {
				t.Fatalf("acquire(%d) with %d in use = %v, want %v", tt.try, b.inUse(), got, tt.allow)
			}
		})
	}
	b := newByteBudget(total)
	b.acquire(1000)
	b.release(1000)
	b.release(5) // a double release must not turn into credit
	if b.inUse() != 0 || b.acquire(total/4*3+1) {
		t.Fatalf("release bookkeeping wrong: in use %d", b.inUse())
	}
}

// paddedReview is the deployment review with an annotation of n bytes.
func paddedReview(t *testing.T, n int) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/clusterfirst-deployment-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	meta := doc["request"].(map[string]any)["object"].(map[string]any)["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann["example.com/padding"] = strings.Repeat("p", n)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBudgetSheds holds one large body half-sent, so its charge is taken,
// and checks that a second large review is shed with 429 and Retry-After
// while an ordinary review is still patched, and that the first completes.
func TestBudgetSheds(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = 1 << 20
	cfg.RequestBudgetBytes = MinRequestBudget(cfg.MaxRequestBytes)
	srv := newTestServer(t, cfg)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	big := paddedReview(t, 900<<10)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/mutate", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(big))
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		code int
		err  error
	}
	first := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- result{code: resp.StatusCode}
	}()
	if _, err := pw.Write(big[:100<<10]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.budget.inUse() < int64(len(big))*bodyCostFactor {
		if time.Now().After(deadline) {
			t.Fatalf("first body never charged its declared size: %d in use", srv.budget.inUse())
		}
		time.Sleep(5 * time.Millisecond)
	}

	post := func(body []byte) *http.Response {
		resp, err := http.Post(ts.URL+"/mutate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post(big)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second big review: %d Retry-After=%q %s, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), msg)
	}
	small, err := os.ReadFile("testdata/clusterfirst-deployment-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	resp = post(small)
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(msg, []byte(`"patchType":"JSONPatch"`)) {
		t.Fatalf("ordinary review while a big one is held: %d %s", resp.StatusCode, msg)
	}

	if _, err := pw.Write(big[100<<10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if r := <-first; r.err != nil || r.code != http.StatusOK {
		t.Fatalf("held review: %d %v", r.code, r.err)
	}
	if n := srv.budget.inUse(); n != 0 {
		t.Fatalf("%d bytes still charged after all requests finished", n)
	}
	if got := testutil.ToFloat64(srv.metrics.Shed); got != 1 {
		t.Fatalf("shed counter %v, want 1", got)
	}
}

// TestBudgetChunkedBody reads a body without Content-Length (doubling
// buffers) and checks it is charged and released.
func TestBudgetChunkedBody(t *testing.T) {
	srv := newTestServer(t, testConfig())
	body := paddedReview(t, 200<<10)
	req := httptest.NewRequest(http.MethodPost, "/mutate", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "JSONPatch") {
		t.Fatalf("chunked review: %d %s", rec.Code, rec.Body.String())
	}
	if n := srv.budget.inUse(); n != 0 {
		t.Fatalf("%d bytes still charged", n)
	}
}

// TestMetricsListenerSplit: with MetricsListen set, the tenant-facing
// handler serves admission and probes but no longer /metrics or /explain,
// and the operations handler serves them.
func TestMetricsListenerSplit(t *testing.T) {
	cfg := testConfig()
	cfg.MetricsListen = "127.0.0.1:0"
	srv := newTestServer(t, cfg)
	ops := srv.OpsHandler()
	if ops == nil {
		t.Fatal("no operations handler with MetricsListen set")
	}
	review, err := os.ReadFile("testdata/clusterfirst-deployment-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		h      http.Handler
		name   string
		method string
		path   string
		want   int
	}{
		{srv, "main", http.MethodPost, "/mutate", http.StatusOK},
		{srv, "main", http.MethodGet, "/healthz", http.StatusOK},
		{srv, "main", http.MethodGet, "/readyz", http.StatusOK},
		{srv, "main", http.MethodGet, "/metrics", http.StatusNotFound},
		{srv, "main", http.MethodPost, "/explain", http.StatusNotFound},
		{ops, "ops", http.MethodGet, "/metrics", http.StatusOK},
		{ops, "ops", http.MethodPost, "/explain", http.StatusOK},
		{ops, "ops", http.MethodGet, "/healthz", http.StatusOK},
		{ops, "ops", http.MethodGet, "/readyz", http.StatusOK},
		{ops, "ops", http.MethodPost, "/mutate", http.StatusNotFound},
	}
	for _, tt := range tests {
		rec := do(tt.h, tt.method, tt.path, "application/json", review)
		if rec.Code != tt.want {
			t.Errorf("%s %s %s: %d, want %d", tt.name, tt.method, tt.path, rec.Code, tt.want)
		}
	}
	if newTestServer(t, testConfig()).OpsHandler() != nil {
		t.Error("operations handler without MetricsListen")
	}
}

// TestBodyReadTimeout: a client that stops sending its body is cut off
// after bodyReadTimeout with 408, and its charge is given back.
func TestBodyReadTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.BodyReadTimeout = 200 * time.Millisecond
	srv := newTestServer(t, cfg)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/mutate", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 100 << 10
	req.Header.Set("Content-Type", "application/json")
	go func() { _, _ = pw.Write(bytes.Repeat([]byte(" "), 40<<10)) }()
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %d, want 408", resp.StatusCode)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("cut off after %s", el)
	}
	if n := srv.budget.inUse(); n != 0 {
		t.Fatalf("%d bytes still charged", n)
	}
}
