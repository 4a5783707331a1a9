package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dnsguard/dnsguard/cmd/config"
)

// -update (or REFRESH_GOLDEN=true) rewrites the golden files from the
// current code; review the diff before committing.
var update = flag.Bool("update", os.Getenv("REFRESH_GOLDEN") == "true", "rewrite webhook/testdata golden files")

const (
	goldenSuffix   = ".golden.json"
	warningsSuffix = ".warnings.golden.txt"
	configSuffix   = ".config.yaml"
)

// testConfig is the configuration every golden case runs with.
func testConfig() Config {
	c := DefaultConfig()
	c.Nameservers = []string{"10.96.0.10"}
	c.TLSCertFile, c.TLSKeyFile = "unused.crt", "unused.key"
	// No API server here to ask (auto would count native sidecars as
	// unknown); sidecar-native-sidecars-off covers the other answer.
	c.NativeSidecars = NativeSidecarsOn
	return c
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if err := cfg.Validate(false); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	return NewServer(cfg, Options{Logger: quietLogger()})
}

// postReview sends body to /mutate through the real handler and decodes the
// AdmissionReview answer.
func postReview(t testing.TB, h http.Handler, body []byte) admissionv1.AdmissionReview {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/mutate: status %d: %s", rec.Code, rec.Body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("/mutate answer is not an AdmissionReview: %v\n%s", err, rec.Body.String())
	}
	if out.APIVersion != admissionV1 || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("/mutate answer lacks apiVersion/kind/response: %s", rec.Body.String())
	}
	return out
}

// applyResponse applies the response's patch (if any) to raw.
func applyResponse(t testing.TB, raw []byte, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	if len(resp.Patch) == 0 {
		if resp.PatchType != nil {
			t.Fatalf("patchType set without a patch")
		}
		return raw
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch without patchType JSONPatch")
	}
	p, err := jsonpatch5.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v\n%s", err, resp.Patch)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch: %v\n%s", err, resp.Patch)
	}
	return out
}

func prettyJSON(t testing.TB, raw []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("pretty: %v", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if got == nil {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if got == nil {
		if err == nil {
			t.Errorf("%s exists but the case produced nothing for it (stale; run go test ./webhook -update)", path)
		}
		return
	}
	if err != nil {
		t.Fatalf("missing golden %s (run go test ./webhook -update): %v", path, err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (run go test ./webhook -update and review the diff)\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func goldenCases(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, f := range all {
		if !strings.HasSuffix(f, goldenSuffix) {
			cases = append(cases, strings.TrimSuffix(f, ".json"))
		}
	}
	if len(cases) < 15 {
		t.Fatalf("only %d golden cases found", len(cases))
	}
	return cases
}

// TestGolden runs every testdata/<case>.json AdmissionReview through the
// HTTP handler, applies the returned patch to the request object and
// compares the result with <case>.golden.json (and the warnings with
// <case>.warnings.golden.txt). A new review is picked up by the glob, a
// golden without its review fails, and each case checks that the patched pod
// is the decision applied to the typed pod (applyDecision) and that mutating
// the result again is a no-op.
//
// The same files are the corpus of test/curl/run.sh (each review posted to
// the real binary over HTTPS, started with the case's config) and of
// test/quota (each golden pod dry-run created on a real kube-apiserver, the
// validator of record for what the webhook writes).
func TestGolden(t *testing.T) {
	cases := goldenCases(t)
	defaultSrv := newTestServer(t, testConfig())
	for _, base := range cases {
		name := filepath.Base(base)
		t.Run(name, func(t *testing.T) {
			// <case>.config.yaml, when present, is loaded over testConfig()
			// (same strict YAML as the webhook's --config).
			srv := defaultSrv
			if _, err := os.Stat(base + configSuffix); err == nil {
				cfg := testConfig()
				if err := config.ReadFile(base+configSuffix, &cfg); err != nil {
					t.Fatal(err)
				}
				srv = newTestServer(t, cfg)
			}
			in, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(in, &review); err != nil || review.Request == nil {
				t.Fatalf("bad test input (want an AdmissionReview with a request): %v", err)
			}
			out := postReview(t, srv, in)
			resp := out.Response
			if resp.UID != review.Request.UID {
				t.Errorf("uid %q, want %q", resp.UID, review.Request.UID)
			}
			if !resp.Allowed {
				t.Errorf("denied: %+v", resp.Result)
			}
			raw := review.Request.Object.Raw
			if len(raw) == 0 {
				// A DELETE carries no object: the golden says so.
				raw = []byte("null")
			}
			patched := applyResponse(t, raw, resp)
			checkGolden(t, base+goldenSuffix, prettyJSON(t, patched))
			var warnings []byte
			if len(resp.Warnings) > 0 {
				warnings = []byte(strings.Join(resp.Warnings, "\n") + "\n")
			}
			checkGolden(t, base+warningsSuffix, warnings)
			checkPatchScope(t, resp.Patch)

			// The patch must give the pod the decision means.
			var orig corev1.Pod
			if review.Request.Kind.Kind == "Pod" && json.Unmarshal(raw, &orig) == nil && len(resp.Patch) > 0 {
				d := Decide(&orig, Env{Namespace: review.Request.Namespace, Nameservers: srv.cfg.Nameservers, NativeSidecarsUnavailable: srv.native.NativeSidecarsUnavailable()}, &srv.cfg)
				applyDecision(&orig, d)
				var got corev1.Pod
				if err := json.Unmarshal(patched, &got); err != nil {
					t.Fatalf("patched pod does not decode: %v", err)
				}
				if !samePod(&orig, &got) {
					want, _ := json.Marshal(&orig)
					t.Errorf("intended pod and raw patch disagree:\ntyped %s\nraw   %s", want, patched)
				}
			}

			t.Run("idempotency", func(t *testing.T) {
				again := review.DeepCopy()
				again.Request.Object = runtime.RawExtension{Raw: patched}
				body, err := json.Marshal(again)
				if err != nil {
					t.Fatal(err)
				}
				second := postReview(t, srv, body)
				if len(second.Response.Patch) != 0 {
					t.Errorf("second mutation patched again: %s", second.Response.Patch)
				}
			})
		})
	}
	// Stale goldens: a golden file whose input is gone.
	known := map[string]bool{}
	for _, c := range cases {
		known[c] = true
	}
	for _, suffix := range []string{goldenSuffix, warningsSuffix, configSuffix} {
		files, _ := filepath.Glob("testdata/*" + suffix)
		for _, f := range files {
			if base := strings.TrimSuffix(f, suffix); !known[base] {
				if *update {
					os.Remove(f)
					continue
				}
				t.Errorf("stale golden %s: no %s.json input", f, base)
			}
		}
	}
}

// patchScope lists what the webhook may write: the DNS fields, its marker
// annotation, the resolver init container with its port sysctl, and the
// resolver's pull secrets. Anything else in a patch is a pod field rewritten
// behind its owner's back, whatever the golden says. (Checked once by making
// fastPatch also add /spec/hostname: 55 cases failed here, "patch writes
// /spec/hostname, outside what the webhook owns".)
var patchScope = []string{
	"/spec/dnsPolicy", "/spec/dnsConfig",
	"/metadata/annotations",
	"/spec/initContainers", "/spec/securityContext", "/spec/imagePullSecrets",
}

func checkPatchScope(t *testing.T, patch []byte) {
	t.Helper()
	if len(patch) == 0 {
		return
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch is not a JSON array of operations: %v", err)
	}
	for _, op := range ops {
		if op.Op != "add" && op.Op != "replace" {
			t.Errorf("patch op %q at %s: the webhook only adds and replaces", op.Op, op.Path)
		}
		ok := false
		for _, p := range patchScope {
			if op.Path == p || strings.HasPrefix(op.Path, p+"/") {
				ok = true
			}
		}
		// Metadata: only the marker annotation, alone or as the whole map
		// (or the whole metadata) when the pod had none.
		switch {
		case op.Path == "/metadata":
			var v map[string]map[string]string
			ok = json.Unmarshal(op.Value, &v) == nil && len(v) == 1 && onlyMarker(v["annotations"])
		case op.Path == "/metadata/annotations":
			var v map[string]string
			ok = json.Unmarshal(op.Value, &v) == nil && onlyMarker(v)
		case strings.HasPrefix(op.Path, "/metadata/annotations/"):
			ok = op.Path == "/metadata/annotations/dnsguard.io~1injected"
		}
		if !ok {
			t.Errorf("patch writes %s, outside what the webhook owns %v", op.Path, patchScope)
		}
	}
}

func onlyMarker(annotations map[string]string) bool {
	_, ok := annotations[AnnotationInjected]
	return ok && len(annotations) == 1
}
