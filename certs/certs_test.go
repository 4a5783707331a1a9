package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", 24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func TestServiceHosts(t *testing.T) {
	got := ServiceHosts("dnsguard", "dns-system", "corp.example")
	want := []string{"dnsguard", "dnsguard.dns-system", "dnsguard.dns-system.svc", "dnsguard.dns-system.svc.corp.example"}
	if !slices.Equal(got, want) {
		t.Fatalf("ServiceHosts = %q, want %q", got, want)
	}
}

func TestIssueServingSANsKeyAndValidity(t *testing.T) {
	ca := mustCA(t)
	hosts := append(ServiceHosts("dnsguard", "dnsguard", "cluster.local"), "127.0.0.1", "::1", "localhost")
	before := time.Now()
	certPEM, keyPEM, err := ca.IssueServing(hosts, 2*time.Hour)
	if err != nil {
		t.Fatalf("IssueServing: %v", err)
	}
	c, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	wantDNS := []string{"dnsguard", "dnsguard.dnsguard", "dnsguard.dnsguard.svc", "dnsguard.dnsguard.svc.cluster.local", "localhost"}
	if !slices.Equal(c.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %q, want %q", c.DNSNames, wantDNS)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !c.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IPAddresses = %v, want [127.0.0.1 ::1]", c.IPAddresses)
	}
	if c.Subject.CommonName != "dnsguard" {
		t.Errorf("CommonName = %q, want first host", c.Subject.CommonName)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if c.IsCA {
		t.Error("serving certificate is a CA")
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ExtKeyUsage %v lacks ServerAuth", c.ExtKeyUsage)
	}
	if life := c.NotAfter.Sub(before); life < 2*time.Hour-time.Minute || life > 2*time.Hour+time.Minute {
		t.Errorf("lifetime from now %s, want about 2h", life)
	}
	if c.NotBefore.After(before) {
		t.Errorf("NotBefore %s is not back-dated for clock skew", c.NotBefore)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("certificate and key do not match: %v", err)
	}
}

func TestIssueServingCappedAtCAExpiry(t *testing.T) {
	ca := mustCA(t) // 24h
	certPEM, _, err := ca.IssueServing([]string{"x"}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertificate(certPEM)
	if c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %s outlives CA %s", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueServingRejectsBadInput(t *testing.T) {
	ca := mustCA(t)
	if _, _, err := ca.IssueServing(nil, time.Hour); err == nil {
		t.Error("no hosts: want error")
	}
	if _, _, err := ca.IssueServing([]string{"a"}, 0); err == nil {
		t.Error("zero validity: want error")
	}
	if _, err := NewCA("x", -time.Second); err == nil {
		t.Error("negative CA validity: want error")
	}
}

func TestCAProperties(t *testing.T) {
	ca := mustCA(t)
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA flags: IsCA=%v MaxPathLenZero=%v KeyUsage=%v", ca.Cert.IsCA, ca.Cert.MaxPathLenZero, ca.Cert.KeyUsage)
	}
	if ca.Key.Curve != elliptic.P256() {
		t.Errorf("CA curve %v, want P-256", ca.Key.Curve.Params().Name)
	}
	again, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatalf("LoadCA round trip: %v", err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Error("LoadCA returned a different certificate")
	}
	leafPEM, leafKey, _ := ca.IssueServing([]string{"leaf"}, time.Hour)
	if _, err := LoadCA(leafPEM, leafKey); err == nil {
		t.Error("LoadCA accepted a non-CA certificate")
	}
	other := mustCA(t)
	if _, err := LoadCA(ca.CertPEM, other.KeyPEM); err == nil {
		t.Error("LoadCA accepted a mismatched key")
	}
}

// TestTLSHandshakeWithIssuedCertificate proves the chain the way the API
// server will use it: a real TLS server presenting the leaf, a client that
// trusts only the CA (the caBundle) and dials by name.
func TestTLSHandshakeWithIssuedCertificate(t *testing.T) {
	ca := mustCA(t)
	hosts := append(ServiceHosts("dnsguard", "dnsguard", "cluster.local"), "127.0.0.1")
	certPEM, keyPEM, err := ca.IssueServing(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected below
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	client := func(caPEM []byte, serverName string) *http.Client {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName},
		}}
	}
	// The API server dials <svc>.<ns>.svc; pin the address to our listener.
	for _, name := range []string{"dnsguard.dnsguard.svc", "127.0.0.1"} {
		resp, err := client(ca.CertPEM, name).Get("https://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatalf("trusted CA, server name %s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Errorf("body %q", body)
		}
	}
	if _, err := client(ca.CertPEM, "dnsguard.other.svc").Get("https://127.0.0.1:" + port + "/"); err == nil {
		t.Error("server name outside the SANs accepted")
	}
	if _, err := client(mustCA(t).CertPEM, "dnsguard.dnsguard.svc").Get("https://127.0.0.1:" + port + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("foreign CA: err = %v, want a certificate error", err)
	}
}
