// Command e2ekit prepares what hack/e2e.sh needs to start a throw-away
// control plane on loopback:
//
//	e2ekit pki --dir=DIR --server=https://127.0.0.1:PORT
//	e2ekit ports N
//
// pki writes, with the project's own certs package, a CA (ca.crt, ca.key),
// the kube-apiserver serving certificate (apiserver.crt/.key for 127.0.0.1,
// localhost and the kubernetes Service names), an admin client certificate
// in group system:masters (admin.crt/.key), a service-account signing key
// pair (sa.key, sa.pub) and admin.kubeconfig pointing at the server.
//
// ports prints N distinct free TCP ports on 127.0.0.1, one per line.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dnsguard/dnsguard/certs"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2ekit pki --dir=DIR --server=URL | e2ekit ports N")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "pki":
		err = runPKI(os.Args[2:])
	case "ports":
		err = runPorts(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2ekit %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func runPorts(args []string) error {
	if len(args) != 1 {
		return errors.New("want exactly one argument: the number of ports")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 32 {
		return fmt.Errorf("port count %q: want 1..32", args[0])
	}
	// Hold every listener until all are chosen so the ports are distinct;
	// the kernel does not hand a just-closed ephemeral port out again soon.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func runPKI(args []string) error {
	fs := flag.NewFlagSet("e2ekit pki", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write the PKI and kubeconfig into (required)")
	server := fs.String("server", "", "API server URL for the kubeconfig (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *server == "" {
		return errors.New("--dir and --server are required")
	}
	const validity = 24 * time.Hour
	ca, err := certs.NewCA("dnsguard-e2e-ca", validity)
	if err != nil {
		return err
	}
	// The service IP 10.96.0.1 is the first address of the Service range the
	// API server gets; in-cluster clients would use it.
	apiCert, apiKey, err := ca.IssueServing([]string{
		"127.0.0.1", "localhost", "10.96.0.1",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	}, validity)
	if err != nil {
		return fmt.Errorf("apiserver certificate: %w", err)
	}
	adminCert, adminKey, err := issueClient(ca, "e2e-admin", []string{"system:masters"}, validity)
	if err != nil {
		return fmt.Errorf("admin certificate: %w", err)
	}
	saKey, saPub, err := newKeyPair()
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", *dir, err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"ca.crt", ca.CertPEM}, {"ca.key", ca.KeyPEM},
		{"apiserver.crt", apiCert}, {"apiserver.key", apiKey},
		{"admin.crt", adminCert}, {"admin.key", adminKey},
		{"sa.key", saKey}, {"sa.pub", saPub},
		{"admin.kubeconfig", kubeconfig(*server, ca.CertPEM, adminCert, adminKey)},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(*dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// issueClient signs a client-auth certificate; the API server maps CN to the
// user name and O to groups, so O=system:masters makes a cluster admin. The
// certs package only issues serving certificates (what dnsguard ships), so
// the client variant lives here with the one test that needs it.
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

// newKeyPair makes the service-account token signing key: the API server
// signs with the private key and verifies with the public one, and
// kube-controller-manager signs the tokens of its controllers.
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

// kubeconfig renders a single-context kubeconfig with embedded credentials,
// so it stays valid wherever the file is copied.
func kubeconfig(server string, caPEM, certPEM, keyPEM []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: e2e-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e-admin
current-context: e2e
`, server, b64(caPEM), b64(certPEM), b64(keyPEM))
}
