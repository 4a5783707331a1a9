//go:build apiserver

package quota

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dnsguard/dnsguard/certs"
	"github.com/dnsguard/dnsguard/test/cluster"
)

// writePKI writes into dir what kube-apiserver and the test client need: a
// CA (the project's certs package), the API server's serving certificate
// for 127.0.0.1, an admin client certificate in group system:masters and a
// service-account signing key pair. Self-contained so the test does not
// depend on another suite's helper.
func writePKI(dir string) error {
	const validity = 2 * time.Hour
	ca, err := certs.NewCA("dnsguard-quota-ca", validity)
	if err != nil {
		return err
	}
	apiCert, apiKey, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, validity)
	if err != nil {
		return fmt.Errorf("apiserver certificate: %w", err)
	}
	adminCert, adminKey, err := cluster.IssueClient(ca, "quota-admin", []string{"system:masters"}, validity)
	if err != nil {
		return fmt.Errorf("admin certificate: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"ca.crt": ca.CertPEM, "apiserver.crt": apiCert, "apiserver.key": apiKey,
		"admin.crt": adminCert, "admin.key": adminKey,
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
