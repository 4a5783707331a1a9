//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// installArgs are the only values the suite sets: the test image of `helm
// test` (busybox from Debian, imported into containerd). Everything else is
// the released chart's defaults: the chart comes from the node's registry
// (oci://, --version), its images are ghcr.io/dnsguard/... pinned by the
// release's digests and pulled from that registry too.
func installArgs(verb string) []string {
	return append(append([]string{verb, release}, chartArgs()...),
		"--namespace", releaseNS, "--set", "tests.image="+busyboxImage,
		"--wait", "--timeout", "4m")
}

// c0Install installs as users do: the release pushed to a registry, its
// signatures verified with the release's key (a failure stops here), then
// `helm install oci://... --version X.Y.Z` with nothing of dnsguard on the
// node beforehand. Negative control (once, at 9ea5627+dirty): the release
// directory with another key's cosign.pub; c0 failed at cosign verify
// ("no matching signatures: invalid signature when validating ASN.1
// encoded signature", exit 12) and installed nothing.
func c0Install(ctx context.Context, t *testing.T) {
	// No dnsguard image preloaded: whatever runs below was pulled.
	refs, err := containerdImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if strings.Contains(r, "dnsguard/webhook") || strings.Contains(r, "dnsguard/resolver") {
			t.Fatalf("containerd holds %s before the install: dnsguard's images must come from the registry", r)
		}
	}
	publishRelease(ctx, t)
	if _, err := tool(ctx, "helm", append(installArgs("install"), "--create-namespace")...); err != nil {
		t.Fatalf("helm install %s --version %s (with hooks): %v%s", chartRef(), rel.version, err, diagnose(ctx, releaseNS))
	}
	// The certificate controller (its own Deployment and ServiceAccount)
	// created the serving Secret and patched the caBundle with its CA.
	if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "deployment/"+fullname+"-certs", "--timeout=60s"); err != nil {
		t.Errorf("certificate controller: %v", err)
	}
	sec, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("certificate controller did not create Secret %s: %v", tlsSecret, err)
	}
	mwc, err := e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("MutatingWebhookConfiguration: %v", err)
	}
	for _, w := range mwc.Webhooks {
		if w.ClientConfig.URL != nil || w.ClientConfig.Service == nil {
			t.Errorf("webhook %s: clientConfig %+v: want the Service, not a URL", w.Name, w.ClientConfig)
		} else if s := w.ClientConfig.Service; s.Name != fullname || s.Namespace != releaseNS {
			t.Errorf("webhook %s: service %s/%s, want %s/%s", w.Name, s.Namespace, s.Name, releaseNS, fullname)
		}
		if !bytes.Contains(w.ClientConfig.CABundle, bytes.TrimSpace(sec.Data["ca.crt"])) {
			t.Errorf("webhook %s: caBundle does not hold the Secret's CA", w.Name)
		}
	}
	if _, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, fullname+"-ca", metav1.GetOptions{}); err != nil {
		t.Errorf("CA Secret %s-ca: %v", fullname, err)
	} else if _, ok := sec.Data["ca.key"]; ok {
		t.Errorf("the serving Secret carries the CA key")
	}
	// The webhook runs from its image under the chart's ServiceAccount, with
	// no credentials but that account's token and its serving certificate.
	pods := waitReady(ctx, t, releaseNS, webhookSelector, 2, 60*time.Second)
	certPods, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: certsSelector})
	if err != nil || len(certPods.Items) == 0 {
		t.Errorf("certificate controller pods (%s): %v, %d found", certsSelector, err, len(certPods.Items))
	} else {
		checkReleasedImages(t, append(append([]corev1.Pod{}, pods...), certPods.Items...), "webhook")
	}
	for _, p := range pods {
		if p.Spec.ServiceAccountName != fullname {
			t.Errorf("pod %s: serviceAccountName %q, want %q", p.Name, p.Spec.ServiceAccountName, fullname)
		}
		for _, v := range p.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName != tlsSecret {
				t.Errorf("pod %s mounts Secret %q: only the serving certificate is expected", p.Name, v.Secret.SecretName)
			}
		}
	}
	// What the webhook's account may and may not do: the chart's RBAC, not
	// an admin's.
	sa := "system:serviceaccount:" + releaseNS + ":" + fullname
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "services/kube-dns", "-n", "kube-system"}, "yes"},
		{[]string{"watch", "namespaces"}, "yes"},
		{[]string{"create", "pods", "-n", "default"}, "no"},
		{[]string{"get", "secrets", "-n", "kube-system"}, "no"},
		{[]string{"get", "secrets/" + fullname + "-ca", "-n", releaseNS}, "no"}, // the CA key stays with the controller
		{[]string{"get", "secrets/" + tlsSecret, "-n", releaseNS}, "yes"},
		{[]string{"update", "mutatingwebhookconfigurations"}, "no"},
		{[]string{"*", "*"}, "no"},
	} {
		out, _ := tool(ctx, "kubectl", append(append([]string{"auth", "can-i"}, c.args...), "--as="+sa)...)
		// The answer is the last line (kubectl may warn above it).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := strings.TrimSpace(lines[len(lines)-1]); got != c.want {
			t.Errorf("kubectl auth can-i %s as the webhook: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	// Ready replicas are not yet reachable from every API server: kube-proxy
	// programs the new endpoints a moment later (once, on this node, an
	// admission call right after install failed with "no route to host"
	// and the pod went through unpatched, as failurePolicy Ignore says).
	// Wait (bounded) for a patched server-side dry run, as a user waits for
	// the install to take effect, and say how long it took.
	createNamespace(ctx, t, nsEnabled, map[string]string{enabledLabel: "true"})
	start := time.Now()
	err = poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		p, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "install-probe"}, Spec: clientSpec(glibcImage),
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && patched(p), nil
	})
	if err != nil {
		t.Fatalf("no patched admission 30s after helm install --wait returned%s", diagnose(ctx, releaseNS))
	}
	t.Logf("first patched admission %.1fs after helm install --wait returned", time.Since(start).Seconds())
	// The sidecar the webhook injects is the released resolver, by digest
	// (c2 runs such pods, pulling it from the registry).
	sc, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "install-sidecar-probe", Annotations: map[string]string{modeAnnotation: "sidecar"}},
		Spec:       clientSpec(glibcImage),
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Errorf("dry-run sidecar pod: %v", err)
	} else if got := containerImage(sc, sidecarName); !isReleased(got, "resolver") {
		t.Errorf("injected resolver image %q, want ghcr.io/dnsguard/resolver pinned to the release's %s", got, rel.images["resolver"].Digest)
	}
	// helm test: the chart's own test pod in an opted-in namespace reads
	// the resolv.conf kubelet rendered and resolves a Service name; it exits
	// non-zero unless both hold. (No --logs: the hook-succeeded delete
	// policy removes the pod before helm could read them.)
	if out, err := tool(ctx, "helm", "test", release, "-n", releaseNS, "--timeout", "2m"); err != nil {
		t.Errorf("helm test: %v", err)
	} else if !regexp.MustCompile(`TEST SUITE:\s+dnsguard-test-dns\n(.*\n){2}Phase:\s+Succeeded`).MatchString(out) {
		t.Errorf("helm test: the dnsguard-test-dns pod did not succeed:\n%s", out)
	}
	createNamespace(ctx, t, nsPlain, nil)
	createNamespace(ctx, t, nsOther, nil)
	createEchoService(ctx, t)
}

// createEchoService makes e2e-other/echo, a ClusterIP Service with a ready
// endpoint, looked up by short name, FQDN and across namespaces.
func createEchoService(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, ns := range []string{nsEnabled, nsOther} {
		spec := clientSpec(glibcImage)
		spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
		deployment(ctx, t, ns, "echo", 1, map[string]string{modeAnnotation: "off"}, spec)
		_, err := e2e.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "echo"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intOrPort(8080)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create Service %s/echo: %v", ns, err)
		}
	}
}

// certsSelector selects the certificate controller's pods.
const certsSelector = "app.kubernetes.io/instance=" + release + ",dnsguard.io/component=certs"

// isReleased reports whether ref is the released image name as the chart
// references it: ghcr.io/dnsguard/NAME (with or without the tag) pinned by
// the release's digest.
func isReleased(ref, name string) bool {
	return strings.HasPrefix(ref, "ghcr.io/dnsguard/"+name) && strings.HasSuffix(ref, "@"+rel.images[name].Digest)
}

// checkReleasedImages fails unless every container of pods runs the
// released image name: the chart's reference (ghcr.io/dnsguard/NAME, by
// the release's digest) and, what the node actually pulled, an imageID
// with that digest.
func checkReleasedImages(t *testing.T, pods []corev1.Pod, name string) {
	t.Helper()
	want := rel.images[name].Digest
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			if !isReleased(c.Image, name) {
				t.Errorf("pod %s container %s: image %q, want ghcr.io/dnsguard/%s pinned to %s", p.Name, c.Name, c.Image, name, want)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if got := imageDigest(cs.ImageID); got != want {
				t.Errorf("pod %s container %s: imageID %s, want the release's %s", p.Name, cs.Name, cs.ImageID, want)
			}
		}
	}
	if len(pods) > 0 {
		t.Logf("%d pods run ghcr.io/dnsguard/%s@%s, pulled from the node's registry", len(pods), name, want)
	}
}

// containerImage is the image of the (init) container named name.
func containerImage(p *corev1.Pod, name string) string {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}
