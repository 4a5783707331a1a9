package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// podShapes are pods whose raw shape decides which operations the fast path
// writes: absent, null and present parents, escaped and duplicated keys.
var podShapes = []string{
	`{}`,
	`{"metadata":null,"spec":null}`,
	`{"metadata":{},"spec":{}}`,
	`{"metadata":{"annotations":null},"spec":{"initContainers":null,"securityContext":null}}`,
	`{"metadata":{"annotations":{}},"spec":{"initContainers":[],"securityContext":{}}}`,
	`{"metadata":{"annotations":{"a/b~c":"x"}},"spec":{"initContainers":[{"name":"init"}],"securityContext":{"sysctls":null}}}`,
	`{"spec":{"securityContext":{"sysctls":[{"name":"kernel.shm_rmid_forced","value":"1"}]},"containers":[{"name":"app","image":"alpine"}]}}`,
	`{"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"containers":[{"name":"a","ports":[{"containerPort":80}]}]}}`,
	`{"sp\u0065c":{"initContainers":[{"name":"x"}]},"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}}}`,
	`{"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"initContainers":[{"name":"x"}],"initContainers":null}}`,
	`{"metadata":{"annotations":{"x":"y"}},"metadata":null}`,
	`{"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"securityContext":{"sysctls":[]},"securityContext":{"runAsUser":1}}}`,
	` { "metadata" : { "name" : "p\"q" , "annotations" : { } } , "spec" : { "dnsPolicy" : "ClusterFirst" } } `,
	`{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"other"},"spec":{"dnsConfig":{"searches":["a.example"],"options":[{"name":"ndots","value":"2"}]}}}`,
	`{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"Spec":{"dnsPolicy":"Default"}}`,
}

// FuzzFastPatch compares the fast path with the generic one (buildPatch) on
// the resulting pod: for every raw pod that decodes, in both modes, the two
// patches must apply and give the same document.
func FuzzFastPatch(f *testing.F) {
	for _, p := range podShapes {
		f.Add([]byte(p), false)
		f.Add([]byte(p), true)
	}
	for _, b := range testdataReviews(f) {
		var review admissionv1.AdmissionReview
		if json.Unmarshal(b, &review) == nil && review.Request != nil && len(review.Request.Object.Raw) > 0 {
			f.Add(review.Request.Object.Raw, false)
			f.Add(review.Request.Object.Raw, true)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, sidecar bool) {
		var pod corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
			return // undecodable pods are never patched
		}
		// An object with a repeated key has no single meaning (RFC 8259
		// §4), so there is no right patch to compare against: the two
		// paths read such a pod differently (found by this fuzzer:
		// {"spec":{"dnsConfig":{"":[],"":[]}}}). The API server never
		// sends one: it decodes the object (warning about or refusing
		// duplicate fields) and sends the webhook its re-encoding.
		var generic any
		if strict, _ := sigsjson.UnmarshalStrict(raw, &generic, sigsjson.DisallowDuplicateFields); len(strict) > 0 {
			return
		}
		cfg := testConfig()
		if sidecar {
			cfg.DefaultMode = ModeSidecar
		}
		d := Decide(&pod, Env{Namespace: "ns", Nameservers: cfg.Nameservers}, &cfg)
		slow, slowErr := buildPatch(raw, d)
		fast, fastErr := fastPatch(raw, d)
		if slowErr != nil {
			return // the generic path refuses it; the pod is left alone either way
		}
		if fastErr != nil {
			t.Fatalf("fast path failed where the generic one did not: %v", fastErr)
		}
		slowPatch, err := json.Marshal(slow)
		if err != nil {
			t.Fatal(err)
		}
		fastPatchJSON, err := appendPatch(nil, fast)
		if err != nil {
			t.Fatal(err)
		}
		slowDoc := applyOps(t, raw, slowPatch)
		fastDoc := applyOps(t, raw, fastPatchJSON)
		if slowDoc == nil {
			return // the generic patch does not apply here (its own problem); nothing to compare
		}
		if fastDoc == nil {
			t.Fatalf("fast patch does not apply where the generic one does\npod %s\nfast %+v", raw, fast)
		}
		if !reflect.DeepEqual(slowDoc, fastDoc) {
			t.Fatalf("different pods\npod  %s\nslow %v\nfast %v", raw, slowDoc, fastDoc)
		}
	})
}

// applyOps applies the JSONPatch pb to raw and returns the result decoded,
// or nil when the patch does not apply.
func applyOps(t *testing.T, raw, pb []byte) any {
	t.Helper()
	p, err := jsonpatch5.DecodePatch(pb)
	if err != nil {
		t.Fatalf("patch %s does not decode: %v", pb, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("patched document is not JSON: %v", err)
	}
	return v
}

// TestFastPatchShapes pins which operations the fast path writes for each
// shape, so a change that silently sends everything to the generic path is
// seen (FuzzFastPatch would still pass).
func TestFastPatchShapes(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultMode = ModeSidecar
	tests := []struct {
		pod   string
		paths []string // nil: generic path expected
	}{
		{`{}`, []string{"/metadata", "/spec"}},
		{`{"metadata":{"annotations":null},"spec":{"initContainers":null,"securityContext":null}}`,
			[]string{"/metadata/annotations", "/spec/dnsPolicy", "/spec/dnsConfig", "/spec/initContainers", "/spec/securityContext"}},
		{`{"metadata":{"annotations":{}},"spec":{"initContainers":[],"securityContext":{}}}`,
			[]string{"/metadata/annotations/dnsguard.io~1injected", "/spec/dnsPolicy", "/spec/dnsConfig", "/spec/initContainers/0", "/spec/securityContext/sysctls"}},
		{`{"spec":{"securityContext":{"sysctls":[{"name":"kernel.shm_rmid_forced","value":"1"}]}}}`,
			[]string{"/metadata", "/spec/dnsPolicy", "/spec/dnsConfig", "/spec/initContainers", "/spec/securityContext/sysctls/-"}},
		{`{"sp\u0065c":{}}`, nil},
		{`{"spec":{"initContainers":[],"initContainers":null}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.pod, func(t *testing.T) {
			var pod corev1.Pod
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(tt.pod), &pod); err != nil {
				t.Fatal(err)
			}
			d := Decide(&pod, Env{Namespace: "ns", Nameservers: cfg.Nameservers}, &cfg)
			if d.Mode != ModeSidecar {
				t.Fatalf("test pod not in sidecar mode: %s", d.Reason)
			}
			_, shapeOK := scanPodShape([]byte(tt.pod))
			if shapeOK != (tt.paths != nil) {
				t.Fatalf("scanPodShape ok=%v, want %v", shapeOK, tt.paths != nil)
			}
			ops, err := fastPatch([]byte(tt.pod), d)
			if err != nil {
				t.Fatal(err)
			}
			if tt.paths == nil {
				return
			}
			var got []string
			for _, op := range ops {
				if op.Operation != "add" {
					t.Errorf("op %s at %s, want add", op.Operation, op.Path)
				}
				got = append(got, op.Path)
			}
			if !reflect.DeepEqual(got, tt.paths) {
				t.Fatalf("paths %q, want %q", got, tt.paths)
			}
		})
	}
}

// FuzzAppendJSONString: the hand encoder writes what encoding/json writes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "<a&b>", "\x00\x1f\n\r\t\b\f", "\xff\xfe", "é中\u2028\u2029", "~/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestAppendReview: the hand-written answer decodes to the same
// AdmissionReview encoding/json would have written.
func TestAppendReview(t *testing.T) {
	pt := admissionv1.PatchTypeJSONPatch
	for _, resp := range []*admissionv1.AdmissionResponse{
		{UID: "u-1", Allowed: true},
		{UID: `u"<2>`, Allowed: true, Patch: []byte(`[{"op":"add","path":"/x","value":1}]`), PatchType: &pt, Warnings: []string{"dnsguard: a", "b\n"}},
		{UID: "u-3", Allowed: false},
	} {
		b := appendReview(nil, resp)
		var got, want admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		ref, _ := json.Marshal(admissionv1.AdmissionReview{Response: resp})
		_ = json.Unmarshal(ref, &want)
		want.APIVersion, want.Kind = admissionV1, "AdmissionReview"
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	}
}

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
