package webhook

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dnsguard/dnsguard/certs"
)

// TestWatchServingSecret: a renewal written to the serving Secret is served
// by the next handshake, without waiting for the mounted files; when the
// lagging files later change to an older certificate, the newer one stays.
func TestWatchServingSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() (crt, key []byte) {
		t.Helper()
		time.Sleep(1100 * time.Millisecond) // distinct NotBefore (second resolution)
		crt, key, err := ca.IssueServing(localHosts, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return crt, key
	}
	oldCrt, oldKey := issue()
	os.WriteFile(filepath.Join(dir, "tls.crt"), oldCrt, 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), oldKey, 0o600)
	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(newTestServer(t, testConfig()), r, quietLogger())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ServeDrained(ctx, hs, ln, nil, Drain{Timeout: time.Second}, quietLogger()) }()
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serialOf := func(pemBytes []byte) string {
		c, err := certs.ParseCertificate(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		return c.SerialNumber.String()
	}

	newCrt, newKey := issue()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-tls", Namespace: "dg"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": newCrt, "tls.key": newKey}}
	client := fake.NewSimpleClientset(secret)
	WatchServingSecret(ctx, client, "dg", "dnsguard-tls", r, quietLogger())
	waitFor(t, func() bool { return served() == serialOf(newCrt) })

	// A renewal through the API reaches the next handshake.
	newerCrt, newerKey := issue()
	secret.Data = map[string][]byte{"tls.crt": newerCrt, "tls.key": newerKey}
	if _, err := client.CoreV1().Secrets("dg").Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return served() == serialOf(newerCrt) })
	if got, _ := certs.ParseCertificate(newerCrt); !r.NotAfter().Equal(got.NotAfter) {
		t.Errorf("NotAfter %s, want the served certificate's %s", r.NotAfter(), got.NotAfter)
	}

	// The kubelet catches up with an older version: keep the newer one.
	os.WriteFile(filepath.Join(dir, "tls.key"), newKey, 0o600)
	os.WriteFile(filepath.Join(dir, "tls.crt"), newCrt, 0o600)
	if s := served(); s != serialOf(newerCrt) {
		t.Errorf("older file replaced the newer certificate from the Secret: serving %s", s)
	}
	// A broken Secret keeps the current certificate.
	secret.Data = map[string][]byte{"tls.crt": []byte("garbage"), "tls.key": newerKey}
	if _, err := client.CoreV1().Secrets("dg").Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := served(); s != serialOf(newerCrt) {
		t.Errorf("broken Secret changed the served certificate: %s", s)
	}
}
