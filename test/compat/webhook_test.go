//go:build apiserver

package compat

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/dnsguard/dnsguard/certs"
	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/internal/corpus"
	"github.com/dnsguard/dnsguard/test/internal/harness"
	"github.com/dnsguard/dnsguard/webhook"
)

const (
	// The metrics of the native-sidecar detection (webhook/metrics.go).
	metricNative    = "dnsguard_webhook_native_sidecars"
	metricFallbacks = "dnsguard_webhook_sidecar_fallbacks_total"
	fallbackReason  = `reason="native-sidecars-unavailable"`
)

var mwcGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}

// testWebhook runs the webhook binary inside the cluster's network
// namespace (the API server calls https://127.0.0.1:PORT/mutate there),
// registered with the chart's own MutatingWebhookConfiguration, and creates
// sidecar-mode pods for real through the API server:
//
//   - where native sidecars are kept (1.29 with the gate on, 1.37), the pod
//     has the resolver as its first init container with restartPolicy
//     Always, and the webhook's gauge says 1;
//   - where they are not (1.29 with SidecarContainers=false), the webhook,
//     left at --native-sidecars=auto, gives the pod dnsconfig mode instead:
//     the pod is created with dnsPolicy None, the dnsguard dnsConfig and no
//     sidecar, the client got the warning, the fallback counter rose and the
//     gauge says 0;
//   - negative control, kept: the same pod through a webhook forced to
//     --native-sidecars=on is rejected by that API server (it strips
//     restartPolicy from the init container, then refuses its probes), which
//     is what the detection prevents.
func testWebhook(t *testing.T, c *cluster.Cluster, s server) {
	dir := t.TempDir()
	ca, err := certs.NewCA("dnsguard-compat-ca", 24*time.Hour)
	if err != nil {
		t.Fatalf("CA: %v", err)
	}
	crt, key, err := ca.IssueServing([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatalf("serving certificate: %v", err)
	}
	for name, b := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": crt, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// --native-sidecars=auto dry-run creates its probe pod in "default"
	// (not in a cluster: no service account namespace), which needs the
	// ServiceAccount no controller manager creates here.
	corpus.EnsureNamespace(t, c.Client(), metav1.NamespaceDefault, nil)
	auto := startWebhook(t, c, dir, "webhook-auto", 9443, 9090, "auto")
	register(t, c, dir, "dnsguard", "dnsguard.io/enabled", 9443)
	ns := "compat-auto"
	corpus.EnsureNamespace(t, c.Client(), ns, map[string]string{"dnsguard.io/enabled": "true"})
	// The webhook asks the API server once before it serves (webhook
	// NativeSidecarDetector.Start), so the gauge is its answer by now.
	native := auto.waitMetric(t, metricNative, "")
	waitMutating(t, c, ns)

	before, _ := auto.metric(t, metricFallbacks, fallbackReason)
	client, warnings := warningClient(t, c)
	pod, err := client.CoreV1().Pods(ns).Create(context.Background(), sidecarPod("app"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("sidecar-mode pod rejected by %s (webhook --native-sidecars=auto): %v", s.name, err)
	}
	after, _ := auto.metric(t, metricFallbacks, fallbackReason)
	t.Logf("%s: gauge %s=%v, fallbacks %v -> %v, warnings %q", s.name, metricNative, native, before, after, warnings.all())

	if s.native {
		if native != 1 {
			t.Errorf("%s=%v on a server that keeps native sidecars, want 1", metricNative, native)
		}
		if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != webhook.SidecarName {
			t.Fatalf("no %s init container in the created pod: %+v", webhook.SidecarName, pod.Spec.InitContainers)
		}
		if rp := pod.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("the sidecar lost restartPolicy Always on %s: %v", s.name, rp)
		}
		if ns := nameservers(pod); len(ns) == 0 || ns[0] != "127.0.0.1" {
			t.Errorf("sidecar pod's nameservers %v, want 127.0.0.1 first", ns)
		}
		return
	}

	if native != 0 {
		t.Errorf("%s=%v on a server with SidecarContainers=false, want 0", metricNative, native)
	}
	for _, ctr := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if ctr.Name == webhook.SidecarName {
			t.Errorf("pod has the %s container although native sidecars are off", webhook.SidecarName)
		}
	}
	if pod.Spec.DNSPolicy != corev1.DNSNone {
		t.Errorf("dnsPolicy %q, want None (dnsconfig mode)", pod.Spec.DNSPolicy)
	}
	if ns := nameservers(pod); len(ns) == 0 || ns[0] != cluster.ClusterDNS || contains(ns, "127.0.0.1") {
		t.Errorf("nameservers %v, want the cluster DNS %s first and no 127.0.0.1", ns, cluster.ClusterDNS)
	}
	// The warning must say what happened and why, so the user can act:
	// the gate named (webhook/mutate.go, nativesidecar.go's probe).
	if !anyContains(warnings.all(), "sidecar mode not possible", "SidecarContainers") {
		t.Errorf("no admission warning naming the fallback and the SidecarContainers gate reached the client: %q", warnings.all())
	}
	if after < before+1 {
		t.Errorf("%s{%s} went %v -> %v, want +1", metricFallbacks, fallbackReason, before, after)
	}

	// Negative control: what the detection prevents.
	startWebhook(t, c, dir, "webhook-on", 9444, 9091, "on")
	register(t, c, dir, "dnsguard-forced", "compat.dnsguard.io/forced", 9444)
	forced := "compat-forced"
	corpus.EnsureNamespace(t, c.Client(), forced, map[string]string{"compat.dnsguard.io/forced": "true"})
	waitMutating(t, c, forced)
	_, err = c.Client().CoreV1().Pods(forced).Create(context.Background(), sidecarPod("forced"), metav1.CreateOptions{})
	if err == nil {
		t.Fatalf("the pod with a forced native sidecar was admitted by %s; the negative control no longer shows the rejection the detection prevents", s.name)
	}
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "initContainers[0]") {
		t.Fatalf("forced native sidecar: want Invalid about initContainers[0], got %v", err)
	}
	t.Logf("rejected as expected with --native-sidecars=on: %v", err)
}

func sidecarPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{webhook.AnnotationMode: webhook.ModeSidecar}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

// webhookProc is a running webhook and a plain-HTTP client for its
// metrics listener in the namespace.
type webhookProc struct {
	p       *harness.Proc
	metrics string
	http    *http.Client
}

func startWebhook(t *testing.T, c *cluster.Cluster, dir, name string, port, metricsPort int, native string) *webhookProc {
	t.Helper()
	p, err := c.Start(name, webhookBin,
		fmt.Sprintf("--listen=127.0.0.1:%d", port), fmt.Sprintf("--metrics-listen=127.0.0.1:%d", metricsPort),
		"--tls-cert-file="+filepath.Join(dir, "tls.crt"), "--tls-key-file="+filepath.Join(dir, "tls.key"),
		"--kubeconfig="+c.AdminKubeconfig(), "--nameservers="+cluster.ClusterDNS,
		// Nothing routes to it but this API server: no drain delay at the end.
		"--shutdown-delay=0s",
		"--native-sidecars="+native)
	if err != nil {
		t.Fatal(err)
	}
	w := &webhookProc{p: p, metrics: fmt.Sprintf("http://127.0.0.1:%d", metricsPort),
		http: &http.Client{Transport: &http.Transport{DialContext: c.RESTConfig().Dial}, Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last 30 lines of the %s log:\n%s", name, p.Tail(30))
		}
		_ = p.Stop(5 * time.Second)
	})
	err = p.WaitUntil(30*time.Second, 200*time.Millisecond, func() bool {
		resp, err := w.http.Get(w.metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		t.Fatalf("%s not ready: %v\n%s", name, err, p.Tail(30))
	}
	return w
}

// metric returns the value of the sample of name whose labels contain
// labels (empty: the unlabelled sample), and whether it was exported.
func (w *webhookProc) metric(t *testing.T, name, labels string) (float64, bool) {
	t.Helper()
	resp, err := w.http.Get(w.metrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		metricName, lbls, _ := strings.Cut(series, "{")
		if metricName != name || (labels == "" && lbls != "") || !strings.Contains(lbls, labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", line, err)
		}
		return v, true
	}
	return 0, false
}

// waitMetric waits until the sample is exported and returns it.
func (w *webhookProc) waitMetric(t *testing.T, name, labels string) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, ok := w.metric(t, name, labels); ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} not exported after 20s (does this webhook build detect native sidecars?)", name, labels)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// register creates the chart's own MutatingWebhookConfiguration (helm
// template, certificates.mode=provided, webhookConfiguration.url) for the
// webhook on port, selecting namespaces labelled label=true.
func register(t *testing.T, c *cluster.Cluster, dir, release, label string, port int) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", releaseNamespace,
		"--show-only", "templates/mutatingwebhookconfiguration.yaml",
		"--set", "certificates.mode=provided", "--set-file", "certificates.caBundle=" + filepath.Join(dir, "ca.crt"),
		"--set", fmt.Sprintf("webhookConfiguration.url=https://127.0.0.1:%d/mutate", port),
		"--set", "webhookConfiguration.namespaceLabel=" + label}
	out, err := exec.Command(filepath.Join(binDir, "helm"), args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	objs := decode(t, bytes.NewReader(out))
	if len(objs) != 1 || objs[0].GetKind() != "MutatingWebhookConfiguration" {
		t.Fatalf("want one MutatingWebhookConfiguration from the chart, got %d objects", len(objs))
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(mwcGVR).Create(context.Background(), objs[0], metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the chart's MutatingWebhookConfiguration: %v", err)
	}
}

// waitMutating dry-run creates a plain pod in ns until the webhook has
// patched it: the API server picks up a new webhook configuration through
// its informer, a moment after the create.
func waitMutating(t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
		got, err := c.Client().CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Spec.DNSPolicy == corev1.DNSNone {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook does not mutate pods in %s after 20s (last: %v)", ns, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// warningClient is an admin clientset that records the warnings the API
// server returns, as kubectl prints them.
func warningClient(t *testing.T, c *cluster.Cluster) (kubernetes.Interface, *warningLog) {
	t.Helper()
	cfg := c.RESTConfig()
	w := &warningLog{}
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

func nameservers(p *corev1.Pod) []string {
	if p.Spec.DNSConfig == nil {
		return nil
	}
	return p.Spec.DNSConfig.Nameservers
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// anyContains: one element of list contains every sub.
func anyContains(list []string, subs ...string) bool {
	for _, x := range list {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(x, sub)
		}
		if all {
			return true
		}
	}
	return false
}
