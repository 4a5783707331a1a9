//go:build apiserver

// The sidecar's resources against the admission that runs after the
// webhook: ResourceQuota on limits.cpu and limits.memory, LimitRange
// min/max/maxLimitRequestRatio, and a Guaranteed pod staying Guaranteed
// (status.qosClass, set by the API server at creation).
//
// The patch comes from the webhook's real /mutate handler (in process), is
// applied to the pod with a JSON Patch library and the result is created
// through the API server. Each scenario also runs the pre-fix sidecar
// resources (requests cpu 10m/memory 16Mi, only a memory limit of 64Mi) and
// asserts the API server rejects that pod, so the test shows the defect.
package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dnsguard/dnsguard/webhook"
)

func q(s string) resource.Quantity { return resource.MustParse(s) }

func list(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(mem)}
}

// namespace creates ns with its default ServiceAccount (no controller
// manager runs here), an optional ResourceQuota (its status filled in as the
// quota controller would) and an optional LimitRange.
func namespace(t *testing.T, name string, annotations map[string]string, quota *corev1.ResourceQuotaSpec, lr *corev1.LimitRangeSpec) {
	t.Helper()
	ctx := context.Background()
	c := client.CoreV1()
	if _, err := c.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if quota != nil {
		rq, err := c.ResourceQuotas(name).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute"}, Spec: *quota}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rq.Status.Hard = quota.Hard
		rq.Status.Used = corev1.ResourceList{}
		for k := range quota.Hard {
			rq.Status.Used[k] = q("0")
		}
		if _, err := c.ResourceQuotas(name).UpdateStatus(ctx, rq, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if lr != nil {
		if _, err := c.LimitRanges(name).Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits"}, Spec: *lr}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// appPod is a pod asking for sidecar mode, whose app container satisfies
// the quota and LimitRange itself.
func appPod(name, ns string, req, lim corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{webhook.AnnotationMode: webhook.ModeSidecar}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1",
			Resources: corev1.ResourceRequirements{Requests: req, Limits: lim},
		}}},
	}
}

// oldDefaults are the sidecar resources before this change.
func oldDefaults() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: q("64Mi")},
	}
}

func webhookServer(t *testing.T, res *corev1.ResourceRequirements, ns webhook.NamespaceModeSource) http.Handler {
	t.Helper()
	cfg := webhook.DefaultConfig()
	cfg.Nameservers = []string{"10.96.0.10"}
	cfg.TLSCertFile, cfg.TLSKeyFile = "unused", "unused"
	if res != nil {
		cfg.Sidecar.Resources = *res
	}
	cfg.Normalize() // as the binary does after loading
	if err := cfg.Validate(false); err != nil {
		t.Fatal(err)
	}
	// The webhook asks this API server whether native sidecars exist, as
	// --native-sidecars=auto does in a cluster.
	native := webhook.NewNativeSidecarDetector(client, "default", cfg.Sidecar.Image, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := native.Refresh(t.Context()); err != nil {
		t.Fatalf("native sidecar check against the API server: %v", err)
	}
	return webhook.NewServer(cfg, webhook.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Namespaces: ns, NativeSidecars: native})
}

// patched sends pod through /mutate and returns the patched pod and the
// admission warnings.
func patched(t *testing.T, h http.Handler, pod *corev1.Pod) (*corev1.Pod, []string) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "quota-test", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: pod.Namespace,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("/mutate answered %d: %s", rec.Code, rec.Body.String())
	}
	if len(out.Response.Patch) == 0 {
		t.Fatalf("no patch; warnings %q", out.Response.Warnings)
	}
	p, err := jsonpatch5.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(res, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.InitContainers) == 0 || got.Spec.InitContainers[0].Name != webhook.SidecarName {
		t.Fatalf("no sidecar injected: %+v", got.Spec.InitContainers)
	}
	return &got, out.Response.Warnings
}

func create(pod *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
}

// wantRejected asserts the API server refused pod (Forbidden) with a message
// containing one of subs.
func wantRejected(t *testing.T, pod *corev1.Pod, subs ...string) {
	t.Helper()
	_, err := create(pod)
	if err == nil {
		t.Fatalf("pod %s was admitted; the scenario no longer shows the rejection it is about", pod.Name)
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Fatalf("pod %s: want Forbidden from quota/LimitRange, got %v", pod.Name, err)
	}
	for _, s := range subs {
		if strings.Contains(err.Error(), s) {
			t.Logf("rejected as expected: %v", err)
			return
		}
	}
	t.Fatalf("pod %s rejected, but not for %q: %v", pod.Name, subs, err)
}

var (
	quotaSpec = &corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
		corev1.ResourceRequestsCPU: q("4"), corev1.ResourceRequestsMemory: q("4Gi"),
		corev1.ResourceLimitsCPU: q("8"), corev1.ResourceLimitsMemory: q("8Gi"),
	}}
	// A LimitRange as platform teams write them: a CPU minimum above the old
	// 10m request, a maximum (which makes limits mandatory), and memory
	// limits at most twice the request (the old sidecar had 4).
	limitRangeSpec = &corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:                 corev1.LimitTypeContainer,
		Min:                  list("20m", "16Mi"),
		Max:                  list("2", "2Gi"),
		MaxLimitRequestRatio: list("10", "2"),
	}}}
)

func TestQuotaAdmitsPatchedPod(t *testing.T) {
	namespace(t, "quota", nil, quotaSpec, nil)
	app := func(name string) *corev1.Pod {
		return appPod(name, "quota", list("100m", "64Mi"), list("200m", "128Mi"))
	}

	p, warnings := patched(t, webhookServer(t, nil, nil), app("new-defaults"))
	if _, err := create(p); err != nil {
		t.Fatalf("patched pod rejected under a ResourceQuota on limits.cpu/limits.memory: %v (warnings %q)", err, warnings)
	}
	old := oldDefaults()
	p, _ = patched(t, webhookServer(t, &old, nil), app("old-defaults"))
	wantRejected(t, p, "limits.cpu")
}

func TestLimitRangeAdmitsPatchedPod(t *testing.T) {
	namespace(t, "limitrange", nil, quotaSpec, limitRangeSpec)
	app := func(name string) *corev1.Pod {
		return appPod(name, "limitrange", list("100m", "64Mi"), list("200m", "128Mi"))
	}

	p, warnings := patched(t, webhookServer(t, nil, nil), app("new-defaults"))
	if _, err := create(p); err != nil {
		t.Fatalf("patched pod rejected under a LimitRange (min/max/maxLimitRequestRatio): %v (warnings %q)", err, warnings)
	}
	old := oldDefaults()
	p, _ = patched(t, webhookServer(t, &old, nil), app("old-defaults"))
	wantRejected(t, p, "minimum cpu usage", "limit to request ratio", "maximum cpu usage", "limits.cpu")
}

// A Guaranteed pod must stay Guaranteed after injection: the API server
// computes status.qosClass at creation.
func TestGuaranteedPodStaysGuaranteed(t *testing.T) {
	namespace(t, "guaranteed", nil, quotaSpec, limitRangeSpec)
	app := func(name string) *corev1.Pod {
		return appPod(name, "guaranteed", list("500m", "256Mi"), list("500m", "256Mi"))
	}

	p, warnings := patched(t, webhookServer(t, nil, nil), app("new-defaults"))
	got, err := create(p)
	if err != nil {
		t.Fatalf("patched Guaranteed pod rejected: %v (warnings %q)", err, warnings)
	}
	if got.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Fatalf("patched pod has QoS %q, want Guaranteed; sidecar resources %+v", got.Status.QOSClass, got.Spec.InitContainers[0].Resources)
	}
	// Before: the webhook copied its configured resources onto the sidecar
	// whatever the pod's QoS, which made the pod Burstable (under the quota
	// it was even rejected, having no cpu limit). Rebuild that pod: the
	// patched one with the pre-fix sidecar resources.
	namespace(t, "guaranteed-noquota", nil, nil, nil)
	o := app("old-defaults")
	o.Namespace = "guaranteed-noquota"
	p, _ = patched(t, webhookServer(t, nil, nil), o)
	p.Spec.InitContainers[0].Resources = oldDefaults()
	got, err = create(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.QOSClass != corev1.PodQOSBurstable {
		t.Fatalf("old sidecar resources gave QoS %q; expected Burstable (the defect)", got.Status.QOSClass)
	}
}

// A namespace whose LimitRange allows a CPU limit/request ratio of only 4
// rejects the default sidecar (ratio 10); the namespace annotation
// dnsguard.io/sidecar-cpu, read by the webhook through its namespace
// informer from this API server, fixes it for every pod there.
func TestNamespaceAnnotationFitsStricterLimitRange(t *testing.T) {
	strict := &corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: list("4", "2"),
	}}}
	namespace(t, "ratio4", map[string]string{webhook.AnnotationSidecarCPU: "125m"}, quotaSpec, strict)
	namespace(t, "ratio4-plain", nil, quotaSpec, strict)

	nm := webhook.NewNamespaceModes(client, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !nm.Start(ctx) {
		t.Fatal("namespace informer did not sync")
	}
	h := webhookServer(t, nil, nm)
	app := func(name, ns string) *corev1.Pod {
		return appPod(name, ns, list("100m", "64Mi"), list("200m", "128Mi"))
	}

	p, warnings := patched(t, h, app("annotated", "ratio4"))
	if got := p.Spec.InitContainers[0].Resources.Requests[corev1.ResourceCPU]; got.String() != "125m" {
		t.Fatalf("sidecar cpu request %s, want the namespace annotation's 125m (warnings %q)", got.String(), warnings)
	}
	if _, err := create(p); err != nil {
		t.Fatalf("pod in the annotated namespace rejected: %v", err)
	}
	p, _ = patched(t, h, app("plain", "ratio4-plain"))
	wantRejected(t, p, "limit to request ratio")
}
