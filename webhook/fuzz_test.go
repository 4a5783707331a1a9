package webhook

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// FuzzMutate posts arbitrary bodies to /mutate. It must never panic or
// answer 5xx; a 200 is always an AdmissionReview v1 that allows the object;
// a returned patch applies cleanly to the request object, and mutating the
// patched object again yields no patch.
func FuzzMutate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		if strings.HasSuffix(file, goldenSuffix) {
			continue
		}
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"Spec":{"dnsPolicy":"Default"}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"spec":{"dnsConfig":{"searches":["a"]},"securityContext":{"sysctls":null}}}}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"annotations":null},"spec":{"initContainers":null}}}}`))
	srv := newTestServer(f, testConfig())
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := do(srv, http.MethodPost, "/mutate", "application/json", body)
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		if rec.Code != http.StatusOK {
			if rec.Code < 400 {
				t.Fatalf("status %d", rec.Code)
			}
			return
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("200 but not an AdmissionReview: %v", err)
		}
		if out.APIVersion != admissionV1 || out.Kind != "AdmissionReview" || out.Response == nil || !out.Response.Allowed {
			t.Fatalf("bad review: %s", rec.Body.String())
		}
		if len(out.Response.Patch) == 0 {
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("patched a request that does not decode: %v", err)
		}
		p, err := jsonpatch5.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		patched, err := p.Apply(in.Request.Object.Raw)
		if err != nil {
			t.Fatalf("patch does not apply: %v\nobject %s\npatch %s", err, in.Request.Object.Raw, out.Response.Patch)
		}
		in.Request.Object = runtime.RawExtension{Raw: patched}
		again, _ := json.Marshal(in)
		rec = do(srv, http.MethodPost, "/mutate", "application/json", again)
		var out2 admissionv1.AdmissionReview
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out2) != nil || out2.Response == nil {
			t.Fatalf("re-mutation failed: %d %s", rec.Code, rec.Body.String())
		}
		if len(out2.Response.Patch) != 0 {
			t.Fatalf("not idempotent: second patch %s", out2.Response.Patch)
		}
	})
}
