package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// testdataReviews returns the admission reviews under testdata (the golden
// outputs left out), as fuzz seeds.
func testdataReviews(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, file := range files {
		if strings.HasSuffix(file, goldenSuffix) {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzMutate posts arbitrary bodies to /mutate. It must never panic or
// answer 5xx; a 200 is always an AdmissionReview v1 that allows the object;
// a returned patch applies cleanly to the request object, and mutating the
// patched object again yields no patch.
func FuzzMutate(f *testing.F) {
	for _, b := range testdataReviews(f) {
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"Spec":{"dnsPolicy":"Default"}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"spec":{"dnsConfig":{"searches":["a"]},"securityContext":{"sysctls":null}}}}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"annotations":null},"spec":{"initContainers":null}}}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"initContainers":[{"name":"x"}],"initContainers":null}}}}`))
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

// FuzzPatch checks the patch against the decision's meaning: for every
// document that decodes as a pod, in dnsconfig and sidecar mode (with and
// without sidecar image pull secrets), the patch applies cleanly, the
// result decodes as the pod Decide intended (applyDecision on the decoded
// pod), and a second mutation gives no patch. A document with a repeated
// field does not decode (see decodePod), so it is never patched.
func FuzzPatch(f *testing.F) {
	for _, p := range []string{
		`{}`,
		`{"metadata":null,"spec":null}`,
		`{"metadata":{"annotations":null},"spec":{"initContainers":null,"securityContext":null,"imagePullSecrets":null}}`,
		`{"metadata":{"annotations":{"a/b~c":"x"}},"spec":{"initContainers":[{"name":"init"}],"securityContext":{"sysctls":null},"imagePullSecrets":[{"name":"r"}]}}`,
		`{"sp\u0065c":{"dnsPolicy":"ClusterFirst"},"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}}}`,
		`{"metadata":{"annotations":{"x":"y"}},"metadata":null}`,
		`{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"Spec":{"dnsPolicy":"Default"}}`,
		`{"spec":{"dnsConfig":{"":[],"":[]}}}`,
	} {
		f.Add([]byte(p), uint8(0))
	}
	for _, b := range testdataReviews(f) {
		var review admissionv1.AdmissionReview
		if json.Unmarshal(b, &review) == nil && review.Request != nil && len(review.Request.Object.Raw) > 0 {
			for mode := range uint8(3) {
				f.Add(review.Request.Object.Raw, mode)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, mode uint8) {
		doc, err := decodePod(raw)
		if err != nil {
			return // undecodable pods are never patched
		}
		cfg := testConfig()
		if mode%3 > 0 {
			cfg.DefaultMode = ModeSidecar
		}
		if mode%3 == 2 {
			cfg.Sidecar.ImagePullSecrets = []string{"resolver-pull", "mirror-pull"}
		}
		d := Decide(&doc.pod, testEnv, &cfg)
		want := doc.pod.DeepCopy()
		applyDecision(want, d)
		if !d.Mutates() {
			if ops := patchFor(&doc, d); len(ops) != 0 {
				t.Fatalf("skipped pod (%s) patched: %v", d.Skip, ops)
			}
			return
		}
		out, ops := patchRaw(t, raw, d)
		got, err := decodePod(out)
		if err != nil {
			t.Fatalf("patched pod does not decode: %v\npod   %s\npatch %s", err, raw, ops)
		}
		if !samePod(want, &got.pod) {
			t.Fatalf("patched pod is not the intended one\npod   %s\npatch %s\ngot   %s", raw, ops, out)
		}
		if again := patchFor(&got, Decide(&got.pod, testEnv, &cfg)); len(again) != 0 {
			t.Fatalf("second mutation patches again: %v", again)
		}
	})
}

// samePod compares two pods as their JSON encodings: raw fields
// (managedFields' fieldsV1) keep a review's whitespace in a typed pod but
// come back compacted from a patched document, which DeepEqual would count
// as a difference.
func samePod(a, b *corev1.Pod) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}
