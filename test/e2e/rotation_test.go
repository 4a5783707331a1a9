//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/e2e/rotation"
)

// TestCertRotation runs bin/certs controller with a 30 s serving
// certificate and a 75 s CA against the real API server, and bin/webhook
// (watching its serving Secret) behind a URL-mode webhook configuration with
// failurePolicy Fail, so any TLS failure during a renewal or a CA rotation
// rejects a pod. Pods are created every 200 ms for 160 s (several leaf
// renewals and at least one CA rotation); every one must be admitted and
// stored patched. It uses its own names and ports, apart from s0–s8.
func TestCertRotation(t *testing.T) {
	scenario(t, "r1", "certificate controller: leaf renewals and a CA rotation while pods are created (failurePolicy Fail)", testCertRotation)
}

func testCertRotation(t *testing.T) {
	const (
		ns       = "e2e-rotation"
		podNS    = "e2e-rotation-pods"
		mwcName  = "dnsguard-rotation"
		secret   = "rotation-tls"
		caSecret = "rotation-ca"
		selector = "dnsguard-rotation"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	createNamespace(ctx, t, ns, nil)
	createNamespace(ctx, t, podNS, map[string]string{selector: "true"})

	port := freePort(t)
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/mutate"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	_, err := e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwcName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods.rotation.dnsguard.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          ptr(int32(10)),
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{selector: "true"}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create webhook configuration: %v", err)
	}
	t.Cleanup(func() {
		_ = e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwcName, metav1.DeleteOptions{})
	})

	ctrl, err := startProc("rotation-certs-controller", filepath.Join(e2e.bin, "certs"), "controller",
		"--kubeconfig="+e2e.kubeconfig, "--namespace="+ns, "--secret-name="+secret, "--ca-secret-name="+caSecret,
		"--webhook-config-name="+mwcName, "--extra-hosts=127.0.0.1,localhost",
		"--validity=30s", "--ca-validity=75s", "--bundle-propagation=2s", "--resync=2s",
		"--lease-duration=6s", "--metrics-listen=127.0.0.1:0", "--log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.stop() })

	// The webhook starts from files (as from a Secret volume) and then
	// follows the Secret through the API; the files are never refreshed,
	// like a kubelet that has not caught up.
	dir := t.TempDir()
	var s *corev1.Secret
	if err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		s, err = e2e.client.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("controller did not create the serving secret: %v", err)
	}
	if _, ok := s.Data["ca.key"]; ok {
		t.Fatal("the serving secret holds the CA key")
	}
	for k, v := range s.Data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wh, err := startProc("rotation-webhook", filepath.Join(e2e.bin, "webhook"),
		"--listen=127.0.0.1:"+strconv.Itoa(port), "--tls-cert-file="+filepath.Join(dir, "tls.crt"), "--tls-key-file="+filepath.Join(dir, "tls.key"),
		"--tls-secret="+ns+"/"+secret, "--kubeconfig="+e2e.kubeconfig, "--nameservers="+clusterDNSIP,
		"--namespace-defaults=false", "--shutdown-delay=0s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.stop() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	served := func(ctx context.Context) (*x509.Certificate, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
	}
	if err := poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) { _, err := served(ctx); return err == nil, nil }); err != nil {
		t.Fatalf("webhook not listening: %v", err)
	}

	res, err := rotation.Run(ctx, rotation.Config{
		Client: e2e.client, Namespace: podNS, SecretNamespace: ns, SecretName: secret,
		Duration: 160 * time.Second, Interval: 200 * time.Millisecond, Served: served, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("result: %+v", *res)
	if res.Failed != 0 || res.Unpatched != 0 {
		t.Errorf("%d of %d pods failed admission, %d stored unpatched: %v", res.Failed, res.Created, res.Unpatched, res.Errors)
	}
	if res.Created < 300 {
		t.Errorf("only %d pods created in 160 s", res.Created)
	}
	// 160 s with 30 s leaves renewed at 2/3 and a 75 s CA rotated at 2/3.
	if res.Leaves < 5 || res.CAs < 2 {
		t.Errorf("saw %d leaves and %d CAs in the secret, want at least 5 and 2: the clock did not run far enough", res.Leaves, res.CAs)
	}
	if res.ServedLeaves < 4 || res.ServedExpired != 0 {
		t.Errorf("webhook served %d distinct leaves (want >= 4, via the Secret watch) and an expired one %d times", res.ServedLeaves, res.ServedExpired)
	}
	if done, err := ctrl.exited(); done {
		t.Errorf("controller exited: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
