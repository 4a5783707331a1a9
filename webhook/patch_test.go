package webhook

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// applyDecision is what a decision means for a typed pod: the tests'
// statement of intent, which the JSONPatch patchFor writes must reproduce
// on the document.
func applyDecision(pod *corev1.Pod, d Decision) {
	if !d.Mutates() {
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationInjected] = d.Mode
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = d.DNSConfig.DeepCopy()
	if d.Sidecar != nil {
		pod.Spec.InitContainers = append([]corev1.Container{*d.Sidecar.DeepCopy()}, pod.Spec.InitContainers...)
	}
	if d.Sysctl != nil {
		if pod.Spec.SecurityContext == nil {
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
		}
		pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, *d.Sysctl)
	}
	pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, d.PullSecrets...)
}

// patchRaw decodes raw as the webhook does, writes the patch for d and
// applies it with the JSON-patch library the API server uses; it returns
// the patched document and the operations.
func patchRaw(t testing.TB, raw []byte, d Decision) ([]byte, []byte) {
	t.Helper()
	doc, err := decodePod(raw)
	if err != nil {
		t.Fatalf("decodePod: %v\n%s", err, raw)
	}
	ops, err := json.Marshal(patchFor(&doc, d))
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch5.DecodePatch(ops)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, ops)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\npod   %s\npatch %s", err, raw, ops)
	}
	return out, ops
}

// patchPod runs the webhook's patch on the JSON of pod and returns the
// patched pod.
func patchPod(t testing.TB, pod *corev1.Pod, d Decision) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := patchRaw(t, raw, d)
	doc, err := decodePod(out)
	if err != nil {
		t.Fatalf("patched pod does not decode: %v\n%s", err, out)
	}
	return &doc.pod
}

// TestPatchShapes pins the operations written for each document shape
// (absent, null, empty and filled parents, escaped keys), checks each
// patch gives the intended pod, and that the result is not patched again.
// Writing "add /spec/initContainers/0" for a null initContainers, or
// "replace" for an absent dnsPolicy, fails here at the apply.
func TestPatchShapes(t *testing.T) {
	tests := []struct {
		name, pod string
		secrets   []string // sidecar.imagePullSecrets
		ops       []string // "verb path"
	}{
		{"empty document", `{}`, []string{"r"},
			[]string{"add /metadata", "add /spec"}},
		{"null parents", `{"metadata":null,"spec":null}`, nil,
			[]string{"add /metadata", "add /spec"}},
		{"empty parents", `{"metadata":{},"spec":{}}`, nil,
			[]string{"add /metadata/annotations", "add /spec/dnsPolicy", "add /spec/dnsConfig", "add /spec/initContainers", "add /spec/securityContext"}},
		{"null members", `{"metadata":{"annotations":null},"spec":{"dnsPolicy":null,"dnsConfig":null,"initContainers":null,"securityContext":null,"imagePullSecrets":null}}`, []string{"r"},
			[]string{"add /metadata/annotations", "add /spec/dnsPolicy", "add /spec/dnsConfig", "add /spec/initContainers", "add /spec/securityContext", "add /spec/imagePullSecrets"}},
		{"empty members", `{"metadata":{"annotations":{}},"spec":{"dnsPolicy":"","initContainers":[],"securityContext":{"sysctls":null},"imagePullSecrets":[]}}`, []string{"r"},
			[]string{"add /metadata/annotations/dnsguard.io~1injected", "add /spec/dnsPolicy", "add /spec/dnsConfig", "add /spec/initContainers/0", "add /spec/securityContext/sysctls", "add /spec/imagePullSecrets/-"}},
		{"filled members", `{"metadata":{"annotations":{"a/b~c":"x"}},"spec":{"dnsPolicy":"ClusterFirst","dnsConfig":{"searches":["x.example"]},"initContainers":[{"name":"init"}],"securityContext":{"sysctls":[{"name":"kernel.shm_rmid_forced","value":"1"}]},"imagePullSecrets":[{"name":"own"}]}}`, []string{"r", "s"},
			[]string{"add /metadata/annotations/dnsguard.io~1injected", "replace /spec/dnsPolicy", "replace /spec/dnsConfig", "add /spec/initContainers/0", "add /spec/securityContext/sysctls/-", "add /spec/imagePullSecrets/-", "add /spec/imagePullSecrets/-"}},
		{"escaped keys", `{"m\u0065tadata":{"annot\u0061tions":{}},"sp\u0065c":{"dns\u0050olicy":"ClusterFirst","initContainers":[{"name":"x"}]}}`, nil,
			[]string{"add /metadata/annotations/dnsguard.io~1injected", "replace /spec/dnsPolicy", "add /spec/dnsConfig", "add /spec/initContainers/0", "add /spec/securityContext"}},
		{"capitalised keys are other fields", `{"Metadata":{"annotations":{"dnsguard.io/mode":"off"}},"Spec":{"initContainers":[{"name":"x"}]}}`, nil,
			[]string{"add /metadata", "add /spec"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.DefaultMode = ModeSidecar
			cfg.Sidecar.ImagePullSecrets = tt.secrets
			raw := []byte(tt.pod)
			doc, err := decodePod(raw)
			if err != nil {
				t.Fatal(err)
			}
			d := Decide(&doc.pod, testEnv, &cfg)
			if d.Mode != ModeSidecar {
				t.Fatalf("test pod not in sidecar mode: %s", d.Reason)
			}
			var got []string
			for _, op := range patchFor(&doc, d) {
				got = append(got, op.Operation+" "+op.Path)
			}
			if !reflect.DeepEqual(got, tt.ops) {
				t.Errorf("operations\n got %q\nwant %q", got, tt.ops)
			}
			out, _ := patchRaw(t, raw, d)
			patched, err := decodePod(out)
			if err != nil {
				t.Fatalf("patched pod does not decode: %v\n%s", err, out)
			}
			want := doc.pod.DeepCopy()
			applyDecision(want, d)
			if !apiequality.Semantic.DeepEqual(want, &patched.pod) {
				t.Errorf("patched pod differs from the intended one\n got %s", out)
			}
			if again := Decide(&patched.pod, testEnv, &cfg); len(patchFor(&patched, again)) != 0 {
				t.Errorf("the patched pod is patched again")
			}
		})
	}
}

// TestPatchKeepsUnknownFields: fields this binary does not know, also
// beside and inside the members the patch writes to, are left as they
// were. Writing the typed securityContext or initContainers back whole
// instead of adding into them loses futureSecurity or futureInit here.
func TestPatchKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"p","futureMeta":{"a":1},"annotations":{"x":"y"}},"spec":{"futureSpec":[1,2],"containers":[{"name":"c","futureContainer":true}],"securityContext":{"futureSecurity":"z"},"initContainers":[{"name":"i","futureInit":1}]},"futureTop":null}`)
	cfg := testConfig()
	cfg.DefaultMode = ModeSidecar
	doc, err := decodePod(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := patchRaw(t, raw, Decide(&doc.pod, testEnv, &cfg))
	for _, field := range []string{`"futureMeta":{"a":1}`, `"futureSpec":[1,2]`, `"futureContainer":true`, `"futureSecurity":"z"`, `"futureInit":1`, `"futureTop":null`} {
		if !strings.Contains(string(out), field) {
			t.Errorf("%s lost: %s", field, out)
		}
	}
}

// TestRepeatedFieldsRefused: a document with a repeated field is not
// patched (the decoder merges repeated objects, a JSON-patch library keeps
// the last one; no patch is right for both), with a warning naming it.
// Dropping the refusal in decodePod fails it.
func TestRepeatedFieldsRefused(t *testing.T) {
	for _, obj := range []string{
		`{"metadata":{"annotations":{"dnsguard.io/mode":"sidecar"}},"metadata":{"name":"p"}}`,
		`{"spec":{"initContainers":[{"name":"x"}]},"spec":{"containers":[{"name":"c"}]}}`,
		`{"spec":{"securityContext":{"sysctls":[]},"securityContext":{"runAsUser":1}}}`,
		`{"sp\u0065c":{},"spec":{}}`,
		`{"metadata":{"annotations":{"a":"1","a":"2"}}}`,
	} {
		if _, err := decodePod([]byte(obj)); err == nil || !strings.Contains(err.Error(), "duplicate field") {
			t.Errorf("decodePod(%s) = %v, want a duplicate field error", obj, err)
		}
	}
	srv := newTestServer(t, testConfig())
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod","version":"v1"},"resource":{"resource":"pods","version":"v1"},"operation":"CREATE","namespace":"n","object":{"spec":{"containers":[]},"spec":{"containers":[{"name":"c"}]}}}}`)
	out := postReview(t, srv, body)
	if len(out.Response.Patch) != 0 || len(out.Response.Warnings) != 1 || !strings.Contains(out.Response.Warnings[0], `duplicate field "spec"`) {
		t.Fatalf("want no patch and a warning about the repeated spec: %+v", out.Response)
	}
}
