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

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
)

func do(h http.Handler, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func readCase(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHTTPErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = 64 << 10
	srv := newTestServer(t, cfg)
	valid := readCase(t, "clusterfirst-deployment-pod")
	big := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"metadata":{"annotations":{"a":"`),
		bytes.Repeat([]byte("x"), 70<<10)...)
	big = append(big, []byte(`"}}}}}`)...)
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		code        int
		msg         string
	}{
		{"GET /mutate", http.MethodGet, "/mutate", "", nil, 405, "use POST"},
		{"PUT /explain", http.MethodPut, "/explain", "application/json", valid, 405, "use POST"},
		{"no content type", http.MethodPost, "/mutate", "", valid, 415, "application/json"},
		{"text/plain", http.MethodPost, "/mutate", "text/plain", valid, 415, `got "text/plain"`},
		{"yaml on explain", http.MethodPost, "/explain", "application/yaml", valid, 415, "application/json"},
		{"empty body", http.MethodPost, "/mutate", "application/json", nil, 400, "empty body"},
		{"whitespace body", http.MethodPost, "/mutate", "application/json", []byte(" \n"), 400, "empty body"},
		{"not JSON", http.MethodPost, "/mutate", "application/json", []byte("{nope"), 400, "malformed AdmissionReview"},
		{"JSON array", http.MethodPost, "/mutate", "application/json", []byte("[1,2]"), 400, "malformed AdmissionReview"},
		{"no request", http.MethodPost, "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "no request"},
		{"v1beta1", http.MethodPost, "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}`), 400, "admission.k8s.io/v1beta1"},
		{"wrong kind", http.MethodPost, "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"a"}}`), 400, `kind "Pod"`},
		{"too large", http.MethodPost, "/mutate", "application/json", big, 413, "limit of 65536 bytes"},
		{"explain not a pod", http.MethodPost, "/explain", "application/json", []byte(`{"spec":{"containers":"x"}}`), 400, "not a Pod"},
		{"explain wrong kind", http.MethodPost, "/explain", "application/json", []byte(`{"kind":"Service","apiVersion":"v1"}`), 400, "not Pod"},
		{"explain review without request", http.MethodPost, "/explain", "application/json", []byte(`{"kind":"AdmissionReview"}`), 400, "no request"},
		{"unknown path", http.MethodGet, "/nope", "", nil, 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(srv, tc.method, tc.path, tc.contentType, tc.body)
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tc.code, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("body %q lacks %q", rec.Body.String(), tc.msg)
			}
			if tc.code == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
		})
	}
	// The server still works after all that.
	if rec := do(srv, http.MethodPost, "/mutate", "application/json; charset=utf-8", valid); rec.Code != 200 {
		t.Fatalf("valid request after errors: %d %s", rec.Code, rec.Body.String())
	}
	if got := testutil.ToFloat64(srv.metrics.HTTPErrors.WithLabelValues("415")); got != 3 {
		t.Errorf("http_errors{code=415} = %v, want 3", got)
	}
}

// A body without Content-Length (chunked) over the limit is cut off while
// reading, not only by the header check.
func TestBodyLimitWithoutContentLength(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = 1024
	srv := newTestServer(t, cfg)
	req := httptest.NewRequest(http.MethodPost, "/mutate", io.NopCloser(bytes.NewReader(bytes.Repeat([]byte(" "), 4096))))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
}

type panickyNamespaces struct{}

func (panickyNamespaces) DefaultMode(string) string { panic("boom") }

func TestPanicStillAnswersAllowed(t *testing.T) {
	cfg := testConfig()
	srv := NewServer(cfg, Options{Logger: quietLogger(), Namespaces: panickyNamespaces{}})
	body := readCase(t, "clusterfirst-deployment-pod")
	out := postReview(t, srv, body)
	if !out.Response.Allowed || len(out.Response.Patch) != 0 || out.Response.UID == "" {
		t.Fatalf("want allowed, unpatched, uid set: %+v", out.Response)
	}
	if !strings.Contains(strings.Join(out.Response.Warnings, " "), "internal error") {
		t.Errorf("warnings %q", out.Response.Warnings)
	}
	if got := testutil.ToFloat64(srv.metrics.Panics); got != 1 {
		t.Errorf("panics_total = %v", got)
	}
	// /explain panics are caught by ServeHTTP and become a 500.
	rec := do(srv, http.MethodPost, "/explain", "application/json", []byte(`{"metadata":{"namespace":"a"},"spec":{"containers":[{"name":"c"}]}}`))
	if rec.Code != 500 {
		t.Fatalf("explain after panic: %d", rec.Code)
	}
}

func TestUndecodablePodAllowedWithWarningAndMetric(t *testing.T) {
	srv := newTestServer(t, testConfig())
	out := postReview(t, srv, readCase(t, "undecodable-pod"))
	if !out.Response.Allowed || len(out.Response.Patch) != 0 {
		t.Fatalf("%+v", out.Response)
	}
	if len(out.Response.Warnings) != 1 || !strings.Contains(out.Response.Warnings[0], "could not decode") {
		t.Fatalf("warnings %q", out.Response.Warnings)
	}
	if got := testutil.ToFloat64(srv.metrics.Skips.WithLabelValues(SkipUndecodable)); got != 1 {
		t.Errorf("skips{undecodable} = %v", got)
	}
	if got := testutil.ToFloat64(srv.metrics.Reviews.WithLabelValues(ResultError, ModeOff)); got != 1 {
		t.Errorf("reviews{error,off} = %v", got)
	}
}

func TestReviewWithoutObject(t *testing.T) {
	srv := newTestServer(t, testConfig())
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"kind":"Pod","version":"v1"},"resource":{"resource":"pods","version":"v1"},"operation":"CREATE","namespace":"a"}}`)
	out := postReview(t, srv, body)
	if out.Response.UID != "u-1" || !out.Response.Allowed || len(out.Response.Patch) != 0 {
		t.Fatalf("%+v", out.Response)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	srv := newTestServer(t, testConfig())
	postReview(t, srv, readCase(t, "clusterfirst-deployment-pod"))
	postReview(t, srv, readCase(t, "sidecar-annotation"))
	postReview(t, srv, readCase(t, "dnspolicy-default-skip"))
	postReview(t, srv, readCase(t, "configmap-create-skip"))
	rec := do(srv, http.MethodGet, "/metrics", "", nil)
	if rec.Code != 200 {
		t.Fatalf("/metrics %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`dnsguard_webhook_reviews_total{mode="dnsconfig",result="patched"} 1`,
		`dnsguard_webhook_reviews_total{mode="sidecar",result="patched"} 1`,
		`dnsguard_webhook_reviews_total{mode="off",result="skipped"} 2`,
		`dnsguard_webhook_skips_total{reason="dns-policy-default"} 1`,
		`dnsguard_webhook_skips_total{reason="not-pod-create"} 1`,
		`dnsguard_webhook_request_duration_seconds_count{endpoint="mutate"} 4`,
		`dnsguard_webhook_patch_errors_total 0`,
		`dnsguard_webhook_nameservers_known 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two servers in one process do not collide (per-server registries).
	other := newTestServer(t, testConfig())
	if testutil.ToFloat64(other.metrics.Reviews.WithLabelValues(ResultPatched, ModeDNSConfig)) != 0 {
		t.Errorf("metrics shared between servers")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	srv := newTestServer(t, testConfig())
	if rec := do(srv, http.MethodGet, "/healthz", "", nil); rec.Code != 200 {
		t.Errorf("/healthz %d", rec.Code)
	}
	if rec := do(srv, http.MethodGet, "/readyz", "", nil); rec.Code != 200 {
		t.Errorf("/readyz %d", rec.Code)
	}
	cfg := testConfig()
	cfg.Nameservers = nil
	var src mutableNameservers
	notReady := NewServer(cfg, Options{Logger: quietLogger(), Nameservers: &src})
	rec := do(notReady, http.MethodGet, "/readyz", "", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "kube-system/kube-dns") {
		t.Errorf("/readyz without nameservers: %d %q", rec.Code, rec.Body.String())
	}
	// While not ready, pods are allowed unchanged with a warning.
	out := postReview(t, notReady, readCase(t, "clusterfirst-deployment-pod"))
	if len(out.Response.Patch) != 0 || len(out.Response.Warnings) == 0 {
		t.Errorf("not-ready admission: %+v", out.Response)
	}
	src = []string{"10.0.0.10"}
	if rec := do(notReady, http.MethodGet, "/readyz", "", nil); rec.Code != 200 {
		t.Errorf("/readyz once known: %d", rec.Code)
	}
}

type mutableNameservers []string

func (m *mutableNameservers) Nameservers() []string { return *m }

type fixedNamespaces map[string]string

func (f fixedNamespaces) DefaultMode(ns string) string { return f[ns] }

func TestNamespaceDefaultThroughServer(t *testing.T) {
	srv := NewServer(testConfig(), Options{Logger: quietLogger(), Namespaces: fixedNamespaces{"shop": ModeSidecar}})
	out := postReview(t, srv, readCase(t, "clusterfirst-deployment-pod")) // namespace "shop" only in the request
	if !bytes.Contains(out.Response.Patch, []byte(SidecarName)) {
		t.Fatalf("namespace default sidecar not applied: %s", out.Response.Patch)
	}
}

func explain(t *testing.T, h http.Handler, query string, body []byte) ExplainResponse {
	t.Helper()
	rec := do(h, http.MethodPost, "/explain"+query, "application/json", body)
	if rec.Code != 200 {
		t.Fatalf("/explain %d: %s", rec.Code, rec.Body.String())
	}
	var out ExplainResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Patch == nil || out.Warnings == nil {
		t.Errorf("patch/warnings must be arrays, not null: %s", rec.Body.String())
	}
	return out
}

func TestExplain(t *testing.T) {
	srv := newTestServer(t, testConfig())
	podJSON := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"demo","annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)

	out := explain(t, srv, "?namespace=team-a", podJSON)
	if out.Mode != ModeSidecar || out.Namespace != "team-a" || len(out.Patch) == 0 || len(out.Warnings) != 0 {
		t.Fatalf("%+v", out)
	}
	wantConf := "nameserver 127.0.0.1\nnameserver 10.96.0.10\nsearch team-a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 single-request-reopen\n"
	if out.ResolvConf != wantConf {
		t.Errorf("resolvConf\n%s\nwant\n%s", out.ResolvConf, wantConf)
	}

	// No namespace at all: "default" with a warning.
	out = explain(t, srv, "", podJSON)
	if out.Namespace != "default" || len(out.Warnings) != 1 || !strings.Contains(out.ResolvConf, "search default.svc.cluster.local") {
		t.Errorf("%+v", out)
	}

	// Untouched ClusterFirst pod: the kubelet's rendering.
	off := []byte(`{"metadata":{"namespace":"x","annotations":{"dnsguard.io/mode":"off"}},"spec":{"containers":[{"name":"app"}]}}`)
	out = explain(t, srv, "", off)
	if out.Mode != ModeOff || out.Skip != SkipModeOff || len(out.Patch) != 0 ||
		out.ResolvConf != unknownNodeSearches+"nameserver 10.96.0.10\nsearch x.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n" ||
		out.Before != out.ResolvConf {
		t.Errorf("%+v", out)
	}

	// An AdmissionReview body works too, and matches /mutate's patch.
	review := readCase(t, "own-dnsconfig-merged")
	out = explain(t, srv, "", review)
	m := postReview(t, srv, review)
	var mutatePatch []any
	_ = json.Unmarshal(m.Response.Patch, &mutatePatch)
	explainPatch, _ := json.Marshal(out.Patch)
	var ep []any
	_ = json.Unmarshal(explainPatch, &ep)
	if len(ep) == 0 || !jsonEqual(ep, mutatePatch) {
		t.Errorf("explain patch %s differs from mutate patch %s", explainPatch, m.Response.Patch)
	}
	// /explain is side-effect free for the admission metrics.
	if got := testutil.ToFloat64(srv.metrics.Reviews.WithLabelValues(ResultPatched, ModeDNSConfig)); got != 1 {
		t.Errorf("reviews after one /mutate and several /explain = %v, want 1", got)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestNonPodAndNonCreateAllowed(t *testing.T) {
	srv := newTestServer(t, testConfig())
	for _, name := range []string{"configmap-create-skip", "pod-update-skip", "pod-subresource-skip"} {
		var in admissionv1.AdmissionReview
		body := readCase(t, name)
		_ = json.Unmarshal(body, &in)
		out := postReview(t, srv, body)
		if !out.Response.Allowed || len(out.Response.Patch) != 0 || out.Response.UID != in.Request.UID {
			t.Errorf("%s: %+v", name, out.Response)
		}
	}
}

// The API server decodes field names case-sensitively, so "Metadata" is an
// unknown field it drops; the webhook must read the object the same way or
// its patch and the stored pod disagree (and reinvocation would patch again).
func TestCaseSensitiveDecoding(t *testing.T) {
	srv := newTestServer(t, testConfig())
	obj := `{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod","version":"v1"},"resource":{"resource":"pods","version":"v1"},"operation":"CREATE","namespace":"n","object":` + obj + `}}`)
	out := postReview(t, srv, body)
	if len(out.Response.Patch) == 0 {
		t.Fatal("the capitalised Metadata key was read as metadata (mode off)")
	}
	patched := applyResponse(t, []byte(obj), out.Response)
	again := bytes.Replace(body, []byte(obj), patched, 1)
	if out2 := postReview(t, srv, again); len(out2.Response.Patch) != 0 {
		t.Fatalf("not idempotent: %s", out2.Response.Patch)
	}
}
