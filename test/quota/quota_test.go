//go:build apiserver

// Package quota checks, against a real kube-apiserver (with etcd, both on
// loopback, no kubelet), that pods patched by the webhook in sidecar mode
// pass the admission that runs after it: ResourceQuota on limits.cpu and
// limits.memory, LimitRange min/max/maxLimitRequestRatio, and that a
// Guaranteed pod stays Guaranteed (status.qosClass, set by the API server at
// creation). Pods stay Pending without a kubelet, but admission runs in full.
//
// The patch comes from the webhook's real /mutate handler (in process), is
// applied to the pod with a JSON Patch library and the result is created
// through the API server. Each scenario also runs the pre-fix sidecar
// resources (requests cpu 10m/memory 16Mi, only a memory limit of 64Mi) and
// asserts the API server rejects that pod, so the test shows the defect.
//
// Run with hack/quota-test.sh (KUBE_APISERVER, ETCD point at the binaries;
// ports: etcd 127.0.0.1:33790-33791, kube-apiserver 127.0.0.1:36443).
package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dnsguard/dnsguard/webhook"
)

const (
	etcdClient = "127.0.0.1:33790"
	etcdPeer   = "127.0.0.1:33791"
	apiPort    = "36443"
)

var client kubernetes.Interface

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	apiserver, etcd := os.Getenv("KUBE_APISERVER"), os.Getenv("ETCD")
	if apiserver == "" || etcd == "" {
		fmt.Fprintln(os.Stderr, "quota test: KUBE_APISERVER and ETCD must name the binaries (hack/quota-test.sh)")
		return 1
	}
	dir, err := os.MkdirTemp("", "dnsguard-quota.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	server := "https://127.0.0.1:" + apiPort
	pki := filepath.Join(dir, "pki")
	if err := writePKI(pki); err != nil {
		fmt.Fprintf(os.Stderr, "pki: %v\n", err)
		return 1
	}
	stopEtcd, err := start(dir, "etcd", etcd, "--name=quota", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://"+etcdClient, "--advertise-client-urls=http://"+etcdClient,
		"--listen-peer-urls=http://"+etcdPeer, "--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=quota=http://"+etcdPeer, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEtcd()
	stopAPI, err := start(dir, "kube-apiserver", apiserver,
		"--etcd-servers=http://"+etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+apiPort,
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+filepath.Join(pki, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		// ResourceQuota and LimitRanger are on by default; named so the
		// test does not depend on the default list.
		"--enable-admission-plugins=LimitRanger,ResourceQuota,ServiceAccount",
		"--endpoint-reconciler-type=none", "--profiling=false")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopAPI()
	cfg := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{
		CAFile: filepath.Join(pki, "ca.crt"), CertFile: filepath.Join(pki, "admin.crt"), KeyFile: filepath.Join(pki, "admin.key"),
	}, QPS: 50, Burst: 100}
	client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver not ready in 3 minutes (log: %s)\n", filepath.Join(dir, "kube-apiserver.log"))
		tail(filepath.Join(dir, "kube-apiserver.log"))
		return 1
	}
	rc := m.Run()
	if rc != 0 {
		tail(filepath.Join(dir, "kube-apiserver.log"))
	}
	return rc
}

// start runs a binary in its own process group and returns its stop func.
func start(dir, name, bin string, args ...string) (func(), error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log.Close()
	}, nil
}

func tail(path string) {
	b, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > 20 {
		l = l[len(l)-20:]
	}
	fmt.Fprintf(os.Stderr, "--- %s (tail)\n%s\n", path, strings.Join(l, "\n"))
}

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
	if err := cfg.Validate(false); err != nil {
		t.Fatal(err)
	}
	return webhook.NewServer(cfg, webhook.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Namespaces: ns})
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
