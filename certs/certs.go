// Package certs is dnsguard's one certificate lifecycle: a small private CA
// and ECDSA P-256 serving certificates signed by it (this file), kept
// current by the Controller (controller.go) in Secrets or in a directory
// (store.go), with caBundle written by one writer (bundle.go) and the
// reconciles driven by watches (run.go). Local runs, the test suites and
// the cluster get their certificates from the same code.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Default lifetimes. A CA outlives many serving certificates so that
// renewing the leaf does not require re-patching caBundle.
const (
	DefaultCAValidity      = 10 * 365 * 24 * time.Hour
	DefaultServingValidity = 365 * 24 * time.Hour
	// clockSkew back-dates NotBefore so a freshly issued certificate is
	// accepted by an API server whose clock runs slightly behind.
	clockSkew = 5 * time.Minute
)

// backdate is how far NotBefore is set into the past: clockSkew, but at
// most a tenth of the lifetime, so short-lived certificates (tests, the
// rotation scenario) keep a lifetime close to the one asked for and the
// renewal point computed from NotBefore/NotAfter stays meaningful.
func backdate(validity time.Duration) time.Duration {
	return min(clockSkew, validity/10)
}

// CA is a certificate authority able to sign serving certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed ECDSA P-256 CA valid for validity from now.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	return newCAAt(commonName, validity, time.Now())
}

// newCAAt is NewCA with an explicit clock, so controller tests can move time.
func newCAAt(commonName string, validity time.Duration, now time.Time) (*CA, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity must be positive, got %s", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"dnsguard"}},
		NotBefore:             now.Add(-backdate(validity)),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA parses a PEM CA certificate and its PEM private key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key pair: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("load CA: certificate is not a CA")
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load CA: key is %T, want ECDSA", pair.PrivateKey)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// IssueServing signs a serving certificate for hosts. Entries that parse as
// IP addresses become IP SANs, the rest DNS SANs; the first host is also the
// common name. The result is PEM: the leaf certificate and its key.
func (ca *CA) IssueServing(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.issueServingAt(hosts, validity, time.Now())
}

// issueServingAt is IssueServing with an explicit clock.
func (ca *CA) issueServingAt(hosts []string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("issue serving certificate: no hosts")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("serving certificate validity must be positive, got %s", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate serving key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		// A leaf that outlives its CA would fail verification early anyway;
		// cap it so renewal logic sees the real deadline.
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"dnsguard"}},
		NotBefore:    now.Add(-backdate(validity)),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ServiceHosts returns the DNS names under which the API server may reach a
// Service: <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.<domain>.
func ServiceHosts(svc, namespace, clusterDomain string) []string {
	return []string{
		svc,
		svc + "." + namespace,
		svc + "." + namespace + ".svc",
		svc + "." + namespace + ".svc." + clusterDomain,
	}
}

// parseCertificates returns every certificate of a PEM bundle that parses.
func parseCertificates(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := bundle; len(rest) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && block.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
	return out
}

// ParseCertificate decodes the first CERTIFICATE block of a PEM bundle.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; len(rest) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return c, nil
		}
	}
	return nil, errors.New("parse certificate: no CERTIFICATE block in PEM")
}

// WriteServing issues a serving certificate from ca for hosts and writes it
// into dir (tls.crt, tls.key, atomically, key first); with writeCA it also
// writes the CA certificate and key (ca.crt, ca.key). It is for tests that
// need a new certificate at a moment of their choosing (a reload under
// load); everything else gets its certificates from the Controller.
func WriteServing(dir string, ca *CA, hosts []string, validity time.Duration, writeCA bool) error {
	certPEM, keyPEM, err := ca.IssueServing(hosts, validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{SecretKeyKey, keyPEM, 0o600},
		{SecretKeyCert, certPEM, 0o644},
	}
	if writeCA {
		files = append([]struct {
			name string
			data []byte
			mode os.FileMode
		}{{SecretKeyCA, ca.CertPEM, 0o644}, {SecretKeyCAKey, ca.KeyPEM, 0o600}}, files...)
	}
	for _, f := range files {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
