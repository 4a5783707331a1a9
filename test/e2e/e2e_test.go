//go:build e2e

// Package e2e runs dnsguard against a real kube-apiserver,
// kube-controller-manager and etcd started by hack/e2e.sh: the chart is
// installed with helm, certificates are bootstrapped by bin/certs against the
// API server, bin/webhook runs as a local process in URL mode, and every
// scenario asserts on pods as the API server stores them.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/dnsguard/dnsguard/certs"
)

// Names fixed by the chart (release "dnsguard") and the contracts.
const (
	release        = "dnsguard"
	releaseNS      = "dnsguard"
	webhookConfig  = "dnsguard"     // MutatingWebhookConfiguration of release "dnsguard"
	tlsSecret      = "dnsguard-tls" // chart default "<fullname>-tls"
	enabledLabel   = "dnsguard.io/enabled"
	modeAnnotation = "dnsguard.io/mode"
	injectedAnno   = "dnsguard.io/injected"
	sidecarName    = "dnsguard-resolver"
	sidecarImage   = "registry.example/dnsguard-resolver:e2e"
	clusterDNSIP   = "10.96.0.10"
	chartDir       = "charts/dnsguard"

	nsEnabled = "e2e-enabled"
	nsPlain   = "e2e-plain"
)

var (
	webhookProc *proc
	certDir     string // where bin/certs bootstrap --out-dir writes, and the webhook reads
)

// scenarios in run order, for the report when a run stops early.
var scenarioTitles = []struct{ id, title string }{
	{"s0", "install: kube-dns Service, helm install --no-hooks, certs bootstrap, webhook"},
	{"s1", "labelled namespace: Deployment pods get dnsConfig, <ns>.svc first"},
	{"s2", "unlabelled namespace and kube-system: pods untouched"},
	{"s3", "mode sidecar: native sidecar accepted, first, restartPolicy Always"},
	{"s4", "mode off, hostNetwork, dnsPolicy Default/None: untouched"},
	{"s5", "server dry-run: patched answer, nothing stored"},
	{"s6", "webhook stopped: pods created unpatched (Ignore); back: patched"},
	{"s7", "serving certificate rotated during pod creation: no failed admission"},
	{"s8", "helm upgrade keeps the CA; helm uninstall removes what it installed"},
}

func TestMain(m *testing.M) {
	if err := loadEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	code := m.Run()
	if webhookProc != nil {
		_ = webhookProc.stop()
	}
	// Scenarios that never ran (an earlier one stopped the run) are listed too.
	for _, s := range scenarioTitles {
		if !slices.ContainsFunc(results, func(r result) bool { return r.id == s.id }) {
			record(result{id: s.id, title: s.title, status: "NOT RUN"})
		}
	}
	if err := writeReport(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: write report:", err)
	}
	os.Exit(code)
}

func title(id string) string {
	for _, s := range scenarioTitles {
		if s.id == id {
			return s.title
		}
	}
	return id
}

// TestE2E runs the scenarios in order: later ones build on the installation
// made by s0, and s8 uninstalls it.
func TestE2E(t *testing.T) {
	ctx := t.Context()
	run := func(id string, fn func(t *testing.T)) bool { return scenario(t, id, title(id), fn) }
	if !run("s0", func(t *testing.T) { install(ctx, t) }) {
		t.Fatal("installation failed; the scenarios need it")
	}
	run("s1", func(t *testing.T) { s1LabelledNamespace(ctx, t) })
	run("s2", func(t *testing.T) { s2Untouched(ctx, t) })
	run("s3", func(t *testing.T) { s3Sidecar(ctx, t) })
	run("s4", func(t *testing.T) { s4OptOuts(ctx, t) })
	run("s5", func(t *testing.T) { s5DryRun(ctx, t) })
	run("s6", func(t *testing.T) { s6WebhookDown(ctx, t) })
	run("s7", func(t *testing.T) { s7Rotation(ctx, t) })
	run("s8", func(t *testing.T) { s8UpgradeUninstall(ctx, t) })
}

// --- s0 -----------------------------------------------------------------

func helmValues() []string {
	return []string{
		"--namespace", releaseNS,
		"--set", fmt.Sprintf("webhookConfiguration.url=https://%s/mutate", webhookAddr()),
		"--set", "tests.enabled=false",
	}
}

func install(ctx context.Context, t *testing.T) {
	// The webhook discovers the cluster DNS address from this Service, as in
	// a real cluster; no kube-dns pods are needed for admission.
	_, err := e2e.client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterDNSIP,
			Selector:  map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create kube-system/kube-dns: %v", err)
	}

	// --no-hooks: the chart's certificate Job would need a kubelet; bin/certs
	// bootstrap runs below as a local process instead, against the same API.
	args := append([]string{"install", release, filepath.Join(e2e.root, chartDir), "--create-namespace", "--no-hooks"}, helmValues()...)
	if _, err := runTool(ctx, "helm", args...); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	mwc, err := e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("helm install did not create MutatingWebhookConfiguration %q: %v", webhookConfig, err)
	}
	for _, w := range mwc.Webhooks {
		if w.ClientConfig.URL == nil || *w.ClientConfig.URL != fmt.Sprintf("https://%s/mutate", webhookAddr()) {
			t.Errorf("webhook %s: clientConfig.url = %v, want the local process", w.Name, w.ClientConfig.URL)
		}
	}

	certDir = filepath.Join(e2e.dir, "webhook-certs")
	if _, err := runTool(ctx, "certs", bootstrapArgs()...); err != nil {
		t.Fatalf("certs bootstrap: %v", err)
	}
	sec, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("certs bootstrap did not create Secret %s/%s: %v", releaseNS, tlsSecret, err)
	}
	caPEM := readFile(t, filepath.Join(certDir, "ca.crt"))
	if !bytes.Equal(sec.Data["ca.crt"], caPEM) {
		t.Errorf("Secret ca.crt differs from %s/ca.crt", certDir)
	}
	mwc, err = e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, caPEM) {
			t.Errorf("webhook %s: caBundle not patched with the bootstrap CA (%d bytes)", w.Name, len(w.ClientConfig.CABundle))
		}
	}
	startWebhook(ctx, t)
	// The opted-in namespace every later scenario uses.
	createNamespace(ctx, t, nsEnabled, map[string]string{enabledLabel: "true"})
}

func bootstrapArgs() []string {
	return []string{
		"bootstrap", "--kubeconfig=" + e2e.kubeconfig,
		"--namespace=" + releaseNS, "--secret-name=" + tlsSecret,
		"--webhook-config-name=" + webhookConfig,
		"--extra-hosts=127.0.0.1", "--out-dir=" + certDir,
	}
}

func startWebhook(ctx context.Context, t *testing.T) {
	t.Helper()
	p, err := startProc("webhook", filepath.Join(e2e.bin, "webhook"),
		"--listen="+webhookAddr(),
		"--tls-cert-file="+filepath.Join(certDir, "tls.crt"),
		"--tls-key-file="+filepath.Join(certDir, "tls.key"),
		// No --nameservers: the webhook discovers kube-system/kube-dns.
		"--kubeconfig="+e2e.kubeconfig,
		"--sidecar-image="+sidecarImage,
		"--log-level=debug",
		// s6 stops it and expects it gone at once (proc.stop kills after
		// 10 s); no Service endpoints to drain here.
		"--shutdown-delay=0s",
	)
	if err != nil {
		t.Fatal(err)
	}
	webhookProc = p
	if err := waitReady(ctx, filepath.Join(certDir, "ca.crt"), 30*time.Second); err != nil {
		if done, werr := p.exited(); done {
			t.Fatalf("webhook exited (%v); see logs/webhook.log: %v", werr, err)
		}
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- assertions ---------------------------------------------------------

var wantOptions = []corev1.PodDNSConfigOption{
	{Name: "ndots", Value: ptr("5")},
	{Name: "timeout", Value: ptr("2")},
	{Name: "attempts", Value: ptr("3")},
	{Name: "single-request-reopen"},
}

func clusterSearches(ns string) []string {
	return []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}
}

func optString(o []corev1.PodDNSConfigOption) string {
	var s []string
	for _, x := range o {
		if x.Value != nil {
			s = append(s, x.Name+":"+*x.Value)
		} else {
			s = append(s, x.Name)
		}
	}
	return strings.Join(s, " ")
}

// assertDNSConfig checks the dnsconfig-mode patch on a stored pod.
func assertDNSConfig(t *testing.T, p *corev1.Pod, ns string) {
	t.Helper()
	id := p.Namespace + "/" + p.Name
	if got := p.Annotations[injectedAnno]; got != "dnsconfig" {
		t.Errorf("%s: annotation %s = %q, want dnsconfig", id, injectedAnno, got)
	}
	if p.Spec.DNSPolicy != corev1.DNSNone {
		t.Errorf("%s: dnsPolicy = %q, want None", id, p.Spec.DNSPolicy)
	}
	c := p.Spec.DNSConfig
	if c == nil {
		t.Errorf("%s: no dnsConfig stored", id)
		return
	}
	if !slices.Equal(c.Nameservers, []string{clusterDNSIP}) {
		t.Errorf("%s: nameservers = %v, want [%s] (the kube-dns ClusterIP)", id, c.Nameservers, clusterDNSIP)
	}
	if !slices.Equal(c.Searches, clusterSearches(ns)) {
		t.Errorf("%s: searches = %v, want %v", id, c.Searches, clusterSearches(ns))
	}
	if optString(c.Options) != optString(wantOptions) {
		t.Errorf("%s: options = %q, want %q", id, optString(c.Options), optString(wantOptions))
	}
}

// assertUntouched checks that a pod kept the DNS settings it was created
// with: no marker annotation, the given policy, and dnsConfig as sent.
func assertUntouched(t *testing.T, p *corev1.Pod, policy corev1.DNSPolicy, dnsConfig *corev1.PodDNSConfig) {
	t.Helper()
	id := p.Namespace + "/" + p.Name
	if v, ok := p.Annotations[injectedAnno]; ok {
		t.Errorf("%s: annotation %s = %q, want none", id, injectedAnno, v)
	}
	if p.Spec.DNSPolicy != policy {
		t.Errorf("%s: dnsPolicy = %q, want %q", id, p.Spec.DNSPolicy, policy)
	}
	if (dnsConfig == nil) != (p.Spec.DNSConfig == nil) ||
		(dnsConfig != nil && (!slices.Equal(dnsConfig.Nameservers, p.Spec.DNSConfig.Nameservers) ||
			!slices.Equal(dnsConfig.Searches, p.Spec.DNSConfig.Searches) ||
			optString(dnsConfig.Options) != optString(p.Spec.DNSConfig.Options))) {
		t.Errorf("%s: dnsConfig = %+v, want %+v", id, p.Spec.DNSConfig, dnsConfig)
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == sidecarName {
			t.Errorf("%s: has the %s sidecar", id, sidecarName)
		}
	}
}

// --- s1 .. s8 -----------------------------------------------------------

func s1LabelledNamespace(ctx context.Context, t *testing.T) {
	pods := deploy(ctx, t, nsEnabled, "web", 2, nil, nil)
	for i := range pods {
		p := &pods[i]
		// The ReplicaSet controller sends generateName and no namespace; the
		// webhook must take the namespace from the AdmissionRequest.
		if p.GenerateName == "" {
			t.Errorf("%s: not created by a controller (no generateName)", p.Name)
		}
		assertDNSConfig(t, p, nsEnabled)
	}
}

func s2Untouched(ctx context.Context, t *testing.T) {
	createNamespace(ctx, t, nsPlain, nil)
	for _, p := range deploy(ctx, t, nsPlain, "web", 2, nil, nil) {
		assertUntouched(t, &p, corev1.DNSClusterFirst, nil)
	}
	// kube-system is excluded by the chart whatever its labels say: label it
	// as opted in to prove that (and remove the label afterwards).
	setLabel := func(v *string) {
		patch := `{"metadata":{"labels":{"` + enabledLabel + `":null}}}`
		if v != nil {
			patch = `{"metadata":{"labels":{"` + enabledLabel + `":"` + *v + `"}}}`
		}
		if _, err := e2e.client.CoreV1().Namespaces().Patch(ctx, "kube-system", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("label kube-system: %v", err)
		}
	}
	setLabel(ptr("true"))
	defer setLabel(nil)
	waitDefaultSA(ctx, t, "kube-system")
	for _, p := range deploy(ctx, t, "kube-system", "e2e-system-app", 1, nil, nil) {
		assertUntouched(t, &p, corev1.DNSClusterFirst, nil)
	}
}

func s3Sidecar(ctx context.Context, t *testing.T) {
	// An existing init container proves the sidecar is put first, before the
	// app's own init steps, so DNS works for them too.
	pods := deploy(ctx, t, nsEnabled, "sidecar", 1, map[string]string{modeAnnotation: "sidecar"}, func(s *corev1.PodSpec) {
		s.InitContainers = []corev1.Container{{Name: "setup", Image: "registry.example/setup:1", Command: []string{"sh", "-c", "true"}}}
	})
	p := &pods[0]
	id := p.Namespace + "/" + p.Name
	if got := p.Annotations[injectedAnno]; got != "sidecar" {
		t.Errorf("%s: annotation %s = %q, want sidecar", id, injectedAnno, got)
	}
	ic := p.Spec.InitContainers
	if len(ic) != 2 || ic[0].Name != sidecarName || ic[1].Name != "setup" {
		names := []string{}
		for _, c := range ic {
			names = append(names, c.Name)
		}
		t.Fatalf("%s: initContainers = %v, want [%s setup]", id, names, sidecarName)
	}
	// The app's init container must arrive intact behind the sidecar (the
	// patch is a JSON diff that rewrites index 0 and appends it again).
	if ic[1].Image != "registry.example/setup:1" || !slices.Equal(ic[1].Command, []string{"sh", "-c", "true"}) || ic[1].RestartPolicy != nil {
		t.Errorf("%s: app init container changed: %+v", id, ic[1])
	}
	sc := ic[0]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s: sidecar restartPolicy = %v, want Always (native sidecar)", id, sc.RestartPolicy)
	}
	if sc.Image != sidecarImage {
		t.Errorf("%s: sidecar image = %q, want %q (--sidecar-image)", id, sc.Image, sidecarImage)
	}
	for _, want := range []string{"--listen=127.0.0.1:53", "--upstream=" + clusterDNSIP + ":53"} {
		if !slices.Contains(sc.Args, want) {
			t.Errorf("%s: sidecar args %v lack %s", id, sc.Args, want)
		}
	}
	probe := []string{"/resolver", "probe", "--server=127.0.0.1:53"}
	for name, pr := range map[string]*corev1.Probe{"startupProbe": sc.StartupProbe, "readinessProbe": sc.ReadinessProbe} {
		if pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command[:min(3, len(pr.Exec.Command))], probe) {
			t.Errorf("%s: sidecar %s = %+v, want exec %v", id, name, pr, probe)
		}
	}
	if p.Spec.DNSPolicy != corev1.DNSNone || p.Spec.DNSConfig == nil ||
		!slices.Equal(p.Spec.DNSConfig.Nameservers, []string{"127.0.0.1", clusterDNSIP}) {
		t.Errorf("%s: dnsPolicy %q dnsConfig %+v, want None with nameservers [127.0.0.1 %s]", id, p.Spec.DNSPolicy, p.Spec.DNSConfig, clusterDNSIP)
	} else if !slices.Equal(p.Spec.DNSConfig.Searches, clusterSearches(nsEnabled)) {
		t.Errorf("%s: searches = %v, want %v", id, p.Spec.DNSConfig.Searches, clusterSearches(nsEnabled))
	}
	var sysctl bool
	if p.Spec.SecurityContext != nil {
		sysctl = slices.Contains(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: "net.ipv4.ip_unprivileged_port_start", Value: "53"})
	}
	if !sysctl {
		t.Errorf("%s: pod securityContext lacks sysctl net.ipv4.ip_unprivileged_port_start=53", id)
	}
}

func s4OptOuts(ctx context.Context, t *testing.T) {
	own := &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.53"}, Searches: []string{"example.internal"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("1")}}}
	cases := []struct {
		name   string
		anno   map[string]string
		mutate func(*corev1.PodSpec)
		policy corev1.DNSPolicy
		config *corev1.PodDNSConfig
	}{
		{"mode-off", map[string]string{modeAnnotation: "off"}, nil, corev1.DNSClusterFirst, nil},
		{"host-network", nil, func(s *corev1.PodSpec) { s.HostNetwork = true }, corev1.DNSClusterFirst, nil},
		{"policy-default", nil, func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSDefault }, corev1.DNSDefault, nil},
		{"policy-none", nil, func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSNone; s.DNSConfig = own.DeepCopy() }, corev1.DNSNone, own},
	}
	for _, c := range cases {
		p := createPod(ctx, t, nsEnabled, c.name, c.anno, c.mutate)
		assertUntouched(t, p, c.policy, c.config)
	}
	// Control: the same bare pod without opt-out is patched, so "untouched"
	// above is the webhook's decision, not a webhook that is not called.
	assertDNSConfig(t, createPod(ctx, t, nsEnabled, "opt-out-control", nil, nil), nsEnabled)
}

func s5DryRun(ctx context.Context, t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dry-run", Namespace: nsEnabled}, Spec: podSpec()}
	got, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run create (the API server refuses webhooks with side effects on dry run): %v", err)
	}
	assertDNSConfig(t, got, nsEnabled)
	if _, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, "dry-run", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after dry run: get pod = %v, want NotFound", err)
	}
}

func s6WebhookDown(ctx context.Context, t *testing.T) {
	if err := webhookProc.stop(); err != nil {
		t.Errorf("stop webhook: %v", err)
	}
	webhookProc = nil
	start := time.Now()
	p := createPod(ctx, t, nsEnabled, "webhook-down", nil, nil)
	t.Logf("pod created with the webhook down in %s", time.Since(start).Round(time.Millisecond))
	assertUntouched(t, p, corev1.DNSClusterFirst, nil)
	pods := deploy(ctx, t, nsEnabled, "while-down", 1, nil, nil)
	assertUntouched(t, &pods[0], corev1.DNSClusterFirst, nil)

	startWebhook(ctx, t)
	assertDNSConfig(t, createPod(ctx, t, nsEnabled, "webhook-back", nil, nil), nsEnabled)
	pods = deploy(ctx, t, nsEnabled, "after-restart", 1, nil, nil)
	assertDNSConfig(t, &pods[0], nsEnabled)
}

func s7Rotation(ctx context.Context, t *testing.T) {
	caFile := filepath.Join(certDir, "ca.crt")
	before, err := servingCert(caFile)
	if err != nil {
		t.Fatalf("handshake before rotation: %v", err)
	}
	sec, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadCA(sec.Data["ca.crt"], sec.Data["ca.key"])
	if err != nil {
		t.Fatalf("load CA from the bootstrap Secret: %v", err)
	}

	// Pods are created back to back from two workers while the leaf is
	// replaced on disk (what a kubelet does to a mounted Secret).
	const workers, perWorker = 2, 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		errs    []error
	)
	rotate := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if w == 0 && i == perWorker/4 {
					close(rotate)
				}
				name := fmt.Sprintf("rotate-%d-%02d", w, i)
				_, err := tryCreatePod(ctx, nsEnabled, name, nil, nil)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				} else {
					created = append(created, name)
				}
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	<-rotate
	if err := certs.WriteServing(certDir, ca, []string{"127.0.0.1"}, 48*time.Hour, false); err != nil {
		t.Fatalf("rotate serving certificate: %v", err)
	}
	rotatedAt := time.Now()
	wg.Wait()
	for _, err := range errs {
		t.Errorf("create during rotation: %v", err)
	}

	// The webhook must pick the new leaf up without a restart.
	var after *x509Cert
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		c, err := servingCert(caFile)
		if err != nil {
			return false, nil
		}
		after = &x509Cert{serial: c.SerialNumber.String(), notAfter: c.NotAfter}
		return c.SerialNumber.Cmp(before.SerialNumber) != 0, nil
	})
	if err != nil {
		t.Errorf("webhook still serves the old certificate (serial %s) %s after rotation: %v", before.SerialNumber, time.Since(rotatedAt).Round(time.Second), err)
	} else {
		t.Logf("webhook serves the new certificate (serial %s, notAfter %s) %s after rotation",
			after.serial, after.notAfter.Format(time.RFC3339), time.Since(rotatedAt).Round(100*time.Millisecond))
	}
	if done, werr := webhookProc.exited(); done {
		t.Fatalf("webhook exited during rotation: %v", werr)
	}
	// With failurePolicy Ignore a failed admission is silent: it shows up as
	// a pod stored without the patch.
	for _, name := range created {
		p, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("get %s: %v", name, err)
			continue
		}
		assertDNSConfig(t, p, nsEnabled)
	}
	assertDNSConfig(t, createPod(ctx, t, nsEnabled, "after-rotation", nil, nil), nsEnabled)
	t.Logf("%d pods created during rotation, all checked", len(created))
}

type x509Cert struct {
	serial   string
	notAfter time.Time
}

func s8UpgradeUninstall(ctx context.Context, t *testing.T) {
	mwcs := e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	bundles := func() [][]byte {
		m, err := mwcs.Get(ctx, webhookConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", webhookConfig, err)
		}
		var b [][]byte
		for _, w := range m.Webhooks {
			b = append(b, w.ClientConfig.CABundle)
		}
		return b
	}
	caBefore := readFile(t, filepath.Join(certDir, "ca.crt"))
	before := bundles()

	args := append([]string{"upgrade", release, filepath.Join(e2e.root, chartDir), "--no-hooks"}, helmValues()...)
	if _, err := runTool(ctx, "helm", args...); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	// The chart's post-upgrade hook would run certs bootstrap again; do it.
	if _, err := runTool(ctx, "certs", bootstrapArgs()...); err != nil {
		t.Fatalf("certs bootstrap after upgrade: %v", err)
	}
	after := bundles()
	if len(after) != len(before) {
		t.Fatalf("webhooks after upgrade: %d, before %d", len(after), len(before))
	}
	for i := range after {
		if !bytes.Equal(after[i], before[i]) || !bytes.Equal(after[i], caBefore) {
			t.Errorf("webhook %d: caBundle changed by helm upgrade (%d bytes, before %d)", i, len(after[i]), len(before[i]))
		}
	}
	if caNow := readFile(t, filepath.Join(certDir, "ca.crt")); !bytes.Equal(caNow, caBefore) {
		t.Errorf("certs bootstrap after upgrade replaced the CA")
	}
	// The API server still trusts the webhook: pods are patched.
	assertDNSConfig(t, createPod(ctx, t, nsEnabled, "after-upgrade", nil, nil), nsEnabled)

	manifest, err := runTool(ctx, "helm", "get", "manifest", release, "--namespace", releaseNS)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifestObjects(manifest)
	if err != nil {
		t.Fatal(err)
	}
	// The chart's pre-delete hook Job (certs cleanup: the webhook
	// configuration first, then the certificate Secrets) needs a kubelet;
	// run the same command locally, then uninstall without hooks.
	if _, err := runTool(ctx, "certs", "cleanup", "--kubeconfig="+e2e.kubeconfig, "--namespace="+releaseNS,
		"--webhook-config-name="+webhookConfig, "--secret-names="+tlsSecret+","+release+"-ca"); err != nil {
		t.Fatalf("certs cleanup: %v", err)
	}
	if _, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, tlsSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("serving Secret after certs cleanup: %v, want NotFound", err)
	}
	if _, err := runTool(ctx, "helm", "uninstall", release, "--namespace", releaseNS, "--no-hooks", "--wait", "--timeout=60s"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	dyn, err := dynamic.NewForConfig(e2e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e2e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	for _, o := range objs {
		m, err := mapper.RESTMapping(o.gvk.GroupKind(), o.gvk.Version)
		if err != nil {
			t.Errorf("%s %s: %v", o.gvk.Kind, o.name, err)
			continue
		}
		ri := dyn.Resource(m.Resource)
		var getter dynamic.ResourceInterface = ri
		if m.Scope.Name() == "namespace" {
			ns := o.namespace
			if ns == "" {
				ns = releaseNS
			}
			getter = ri.Namespace(ns)
		}
		err = poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			_, err := getter.Get(ctx, o.name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("%s %s still present after helm uninstall", o.gvk.Kind, o.name)
		}
	}
	t.Logf("helm uninstall removed all %d objects of the release", len(objs))
	// With the configuration gone the API server no longer calls the webhook.
	assertUntouched(t, createPod(ctx, t, nsEnabled, "after-uninstall", nil, nil), corev1.DNSClusterFirst, nil)
}

type manifestObject struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

// manifestObjects lists the objects of a rendered helm manifest.
func manifestObjects(manifest string) ([]manifestObject, error) {
	var out []manifestObject
	for _, doc := range strings.Split(manifest, "\n---") {
		var o struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("parse manifest: %w", err)
		}
		if o.Kind == "" {
			continue
		}
		out = append(out, manifestObject{gvk: schema.FromAPIVersionAndKind(o.APIVersion, o.Kind), namespace: o.Metadata.Namespace, name: o.Metadata.Name})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("helm manifest lists no objects")
	}
	return out, nil
}
