package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/dnsguard/dnsguard/certs"
)

// identity is a client certificate identity: the API server maps CN to the
// user and O to groups, and the default RBAC bootstrap policy binds these
// names (system:kube-proxy, system:kube-scheduler, ...) to their roles.
type identity struct {
	file   string
	cn     string
	groups []string
}

// identities are the components' client identities; each node's kubelet
// is added by writePKI (system:node:NAME, what the Node authorizer and
// NodeRestriction check).
var identities = []identity{
	{"admin", "dnsguard-e2e-admin", []string{"system:masters"}},
	{"kube-proxy", "system:kube-proxy", nil},
	{"kube-scheduler", "system:kube-scheduler", nil},
	{"kube-controller-manager", "system:kube-controller-manager", nil},
}

// writePKI creates, with the project's own certs package for the CA and the
// serving certificates, everything the components need under dir, and one
// kubeconfig per identity pointing at server, and each node's kubelet
// client and serving credentials.
func writePKI(dir, server string, nodes []*node) error {
	const validity = 24 * time.Hour
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := certs.NewCA("dnsguard-e2e-cluster-ca", validity)
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": ca.KeyPEM}
	apiCert, apiKey, err := ca.IssueServing([]string{
		NodeIP, "127.0.0.1", "localhost", KubernetesSvc,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + ClusterDomain,
	}, validity)
	if err != nil {
		return fmt.Errorf("apiserver certificate: %w", err)
	}
	files["apiserver.crt"], files["apiserver.key"] = apiCert, apiKey
	ids := identities
	for _, n := range nodes {
		kubeletCert, kubeletKey, err := ca.IssueServing([]string{n.ip, n.name}, validity)
		if err != nil {
			return fmt.Errorf("%s kubelet serving certificate: %w", n.name, err)
		}
		files[n.pkiName()+"-serving.crt"], files[n.pkiName()+"-serving.key"] = kubeletCert, kubeletKey
		ids = append(ids, identity{n.pkiName(), "system:node:" + n.name, []string{"system:nodes"}})
	}
	for _, id := range ids {
		c, k, err := issueClient(ca, id.cn, id.groups, validity)
		if err != nil {
			return fmt.Errorf("%s client certificate: %w", id.file, err)
		}
		files[id.file+".crt"], files[id.file+".key"] = c, k
		files[id.file+".kubeconfig"] = kubeconfig(server, ca.CertPEM, c, k)
	}
	saKey, saPub, err := newKeyPair()
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	files["sa.key"], files["sa.pub"] = saKey, saPub
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// issueClient signs a client-auth certificate (CN = user, O = groups). The
// certs package issues only serving certificates (what dnsguard ships), so
// the client variant lives with the test harness that needs it.
func issueClient(ca *certs.CA, cn string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// newKeyPair makes the service-account token signing key.
func newKeyPair() (privPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

// kubeconfig renders a single-context kubeconfig with embedded credentials.
func kubeconfig(server string, caPEM, certPEM, keyPEM []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: dnsguard-e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: user
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: dnsguard-e2e
  context:
    cluster: dnsguard-e2e
    user: user
current-context: dnsguard-e2e
`, server, b64(caPEM), b64(certPEM), b64(keyPEM))
}

// apiServerURL is how everything inside the namespace reaches the API server.
func apiServerURL() string {
	return "https://" + net.JoinHostPort(NodeIP, fmt.Sprint(APIPort))
}
