package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dnsguard/dnsguard/certs"
	"github.com/dnsguard/dnsguard/webhook"
)

// TestRotationEndToEnd runs the webhook's certificate reloader on the files
// the controller keeps in a directory (a webhook outside the cluster, URL
// mode) and a client that trusts exactly the caBundle in the webhook
// configuration, as the API server does. Renewals must reach new
// handshakes without restarting the server, and the bundle the API server
// holds must keep verifying them, across a CA rotation too.
func TestRotationEndToEnd(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	cs := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "dnsguard"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.dnsguard.io"}},
	})
	ctrl, err := certs.NewController(cs, certs.ControllerConfig{
		OutDir: dir, WebhookConfigName: "dnsguard", Namespace: "dnsguard", ServiceName: "dnsguard", Hosts: []string{"127.0.0.1"},
		Validity: 7 * 24 * time.Hour, CAValidity: 12 * 24 * time.Hour, BundlePropagation: time.Minute,
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func(wantLeaf, wantCA bool) {
		t.Helper()
		res, err := ctrl.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.LeafIssued != wantLeaf || res.CARotated != wantCA {
			t.Fatalf("reconcile: leaf issued %v, CA rotated %v; want %v, %v", res.LeafIssued, res.CARotated, wantLeaf, wantCA)
		}
	}
	caBundle := func() []byte {
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "dnsguard", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return m.Webhooks[0].ClientConfig.CABundle
	}
	reconcile(true, true)

	reloader, err := webhook.NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Not httptest.StartTLS: it installs its own certificate, which Go
	// prefers over GetCertificate when the client sends no SNI (IP URLs).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(tls.NewListener(ln, reloader.TLSConfig()))
	defer srv.Close()
	url := "https://" + ln.Addr().String() + "/"

	// serial dials a fresh connection (as the API server does after a
	// rotation) trusting bundle, verifying at the test clock's time.
	serial := func(bundle []byte) (*big.Int, error) {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bundle) {
			t.Fatal("caBundle holds no certificate")
		}
		var got *big.Int
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true, // verified below with the test clock
				VerifyConnection: func(st tls.ConnectionState) error {
					leaf := st.PeerCertificates[0]
					got = leaf.SerialNumber
					_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "dnsguard.dnsguard.svc", CurrentTime: now})
					return err
				},
			},
		}}
		resp, err := c.Get(url)
		if err != nil {
			return got, err
		}
		resp.Body.Close()
		return got, nil
	}

	bundle1 := caBundle()
	s1, err := serial(bundle1)
	if err != nil {
		t.Fatalf("initial handshake: %v", err)
	}

	// Leaf renewal (past 2/3 of 7 days): the same server, the same
	// caBundle, a new certificate.
	now = now.Add(5 * 24 * time.Hour)
	reconcile(true, false)
	s2, err := serial(caBundle())
	if err != nil {
		t.Fatalf("after leaf renewal: %v", err)
	}
	if s2.Cmp(s1) == 0 {
		t.Fatal("server still presents the old leaf after renewal: no reload from disk")
	}
	if string(caBundle()) != string(bundle1) {
		t.Error("leaf renewal changed caBundle")
	}

	// CA rotation (past 2/3 of 12 days, before the leaf is due): caBundle becomes new+old at once,
	// and the leaf of the old CA is served until the new CA has
	// propagated; both bundles verify it.
	now = now.Add(3*24*time.Hour + 12*time.Hour)
	reconcile(false, true)
	for name, b := range map[string][]byte{"new": caBundle(), "old": bundle1} {
		if s, err := serial(b); err != nil || s.Cmp(s2) != 0 {
			t.Fatalf("during propagation, %s caBundle: serial %v err %v; want the previous leaf, trusted", name, s, err)
		}
	}
	now = now.Add(time.Minute)
	reconcile(true, false)
	s3, err := serial(caBundle())
	if err != nil {
		t.Fatalf("after CA rotation, with the patched caBundle: %v", err)
	}
	if s3.Cmp(s2) == 0 {
		t.Fatal("server did not pick up the leaf from the new CA")
	}
	if _, err := serial(bundle1); err == nil {
		t.Error("the pre-rotation caBundle still verifies the new leaf; the rotation did not happen")
	}
}
