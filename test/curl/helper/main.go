// Command helper is the curl test's small toolbox for what curl and jq cannot
// do reliably on their own:
//
//	helper apply ORIGINAL.json PATCH.json   print ORIGINAL with the RFC 6902 patch applied
//	helper freeport                         print a free TCP port on 127.0.0.1
//	helper tls HOST:PORT CAFILE MINVER MAXVER   handshake with the given TLS version range
//
// The patch is applied with evanphx/json-patch, the library the Kubernetes
// API server itself uses, so a patch accepted here is one the API server
// would apply the same way. The TLS probe exists because the system curl's
// OpenSSL may refuse TLS 1.1 on the client side; a Go client can still offer
// it, so a refusal proves the server (not the client) said no.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: helper apply|freeport|tls [args]")
	}
	switch args[0] {
	case "apply":
		if len(args) != 3 {
			return fmt.Errorf("usage: helper apply ORIGINAL.json PATCH.json")
		}
		return apply(args[1], args[2])
	case "freeport":
		return freePort()
	case "tls":
		if len(args) != 5 {
			return fmt.Errorf("usage: helper tls HOST:PORT CAFILE MINVER MAXVER (versions 1.0 1.1 1.2 1.3)")
		}
		return probeTLS(args[1], args[2], args[3], args[4])
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func apply(origPath, patchPath string) error {
	orig, err := os.ReadFile(origPath)
	if err != nil {
		return fmt.Errorf("read original: %w", err)
	}
	raw, err := os.ReadFile(patchPath)
	if err != nil {
		return fmt.Errorf("read patch: %w", err)
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return fmt.Errorf("decode patch: %w", err)
	}
	out, err := patch.Apply(orig)
	if err != nil {
		return fmt.Errorf("apply patch: %w", err)
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

func freePort() error {
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	fmt.Println(port)
	return nil
}

var versions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// probeTLS prints the negotiated version and exits 0, or fails with the
// handshake error.
func probeTLS(addr, caFile, minV, maxV string) error {
	lo, ok1 := versions[minV]
	hi, ok2 := versions[maxV]
	if !ok1 || !ok2 {
		return fmt.Errorf("unknown TLS version %q or %q", minV, maxV)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s", caFile)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, MinVersion: lo, MaxVersion: hi})
	if err != nil {
		return fmt.Errorf("handshake with %s (TLS %s..%s): %w", addr, minV, maxV, err)
	}
	defer conn.Close()
	fmt.Println(tls.VersionName(conn.ConnectionState().Version))
	return nil
}
