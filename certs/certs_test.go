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
	"os"
	"path/filepath"
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

func TestNeedsRenewal(t *testing.T) {
	ca := mustCA(t)
	hosts := ServiceHosts("dnsguard", "ns", "cluster.local")
	certPEM, _, err := ca.IssueServing(hosts, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertificate(certPEM)
	cases := []struct {
		name        string
		pem         []byte
		hosts       []string
		now         time.Time
		renewBefore time.Duration
		want        bool
		wantErr     bool
	}{
		{"fresh", certPEM, hosts, c.NotBefore.Add(time.Hour), time.Hour, false, false},
		{"just outside window", certPEM, hosts, c.NotAfter.Add(-61 * time.Minute), time.Hour, false, false},
		{"inside window", certPEM, hosts, c.NotAfter.Add(-59 * time.Minute), time.Hour, true, false},
		{"expired", certPEM, hosts, c.NotAfter.Add(time.Second), 0, true, false},
		{"not yet valid", certPEM, hosts, c.NotBefore.Add(-time.Second), time.Hour, true, false},
		{"subset of hosts ok", certPEM, hosts[:2], c.NotBefore.Add(time.Hour), time.Hour, false, false},
		{"missing SAN", certPEM, append(slices.Clone(hosts), "dnsguard.other.svc"), c.NotBefore.Add(time.Hour), time.Hour, true, false},
		{"missing IP SAN", certPEM, []string{"127.0.0.1"}, c.NotBefore.Add(time.Hour), time.Hour, true, false},
		{"garbage", []byte("not pem"), hosts, time.Now(), time.Hour, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NeedsRenewal(tc.pem, tc.hosts, tc.now, tc.renewBefore)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("NeedsRenewal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVerifyChain(t *testing.T) {
	ca := mustCA(t)
	other := mustCA(t)
	certPEM, _, _ := ca.IssueServing([]string{"svc.ns.svc"}, time.Hour)
	if err := VerifyChain(ca.CertPEM, certPEM, "svc.ns.svc", time.Now()); err != nil {
		t.Errorf("own CA: %v", err)
	}
	if err := VerifyChain(other.CertPEM, certPEM, "svc.ns.svc", time.Now()); err == nil {
		t.Error("foreign CA verified the leaf")
	}
	if err := VerifyChain(ca.CertPEM, certPEM, "evil.ns.svc", time.Now()); err == nil {
		t.Error("wrong host verified")
	}
	if err := VerifyChain(ca.CertPEM, certPEM, "svc.ns.svc", time.Now().Add(2*time.Hour)); err == nil {
		t.Error("expired leaf verified")
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

func TestWriteDevFiles(t *testing.T) {
	dir := t.TempDir()
	if err := WriteDev(dir, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := VerifyChain(read("ca.crt"), read("tls.crt"), "localhost", time.Now()); err != nil {
		t.Error(err)
	}
	for _, n := range []string{"ca.key", "tls.key"} {
		st, _ := os.Stat(filepath.Join(dir, n))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", n, st.Mode().Perm())
		}
	}
	if _, err := LoadCA(read("ca.crt"), read("ca.key")); err != nil {
		t.Error(err)
	}
}
