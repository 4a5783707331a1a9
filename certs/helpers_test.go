package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// verifyChain checks that the leaf PEM chains to a CA of the bundle PEM for
// host at now, as the API server does with caBundle.
func verifyChain(bundle, leafPEM []byte, host string, now time.Time) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return errors.New("verify chain: no CA certificate in the bundle")
	}
	leaf, err := ParseCertificate(leafPEM)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: now}); err != nil {
		return fmt.Errorf("verify chain for %q: %w", host, err)
	}
	return nil
}

func countCerts(b []byte) int {
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return n
		}
		n++
	}
}
