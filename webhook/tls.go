package webhook

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate and key from files and re-reads them
// when they change on disk. Kubernetes updates Secret volumes by swapping a
// symlink, so the files change all at once; a half-rotated pair that does not
// load is ignored (the old certificate stays) and retried on the next
// handshake. Open connections are never touched: only new handshakes see the
// new certificate.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// Observe, when set, is told about every reload attempt after the first.
	Observe func(ok bool)

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
	failed    fileStamp // cert stamp of the last pair that failed to load
}

// fileStamp identifies one version of a file cheaply.
type fileStamp struct {
	mtime time.Time
	size  int64
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mtime: fi.ModTime(), size: fi.Size(), inode: inodeOf(fi)}, nil
}

// NewCertReloader loads the pair once; an error here is fatal for the caller
// because a webhook without a certificate cannot serve.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	cs, ks, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	r.cert, r.certStamp, r.keyStamp = &cert, cs, ks
	return r, nil
}

func (r *CertReloader) stamps() (cert, key fileStamp, err error) {
	if cert, err = stampOf(r.certFile); err != nil {
		return cert, key, fmt.Errorf("TLS certificate: %w", err)
	}
	if key, err = stampOf(r.keyFile); err != nil {
		return cert, key, fmt.Errorf("TLS key: %w", err)
	}
	return cert, key, nil
}

// GetCertificate is for tls.Config.GetCertificate. Two stat calls per
// handshake are negligible next to the handshake's own cryptography and make
// a rotation visible to the very next connection.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maybeReloadLocked()
	return r.cert, nil
}

func (r *CertReloader) maybeReloadLocked() {
	cs, ks, err := r.stamps()
	if err != nil {
		// Mid-rotation a file can be missing for an instant; keep serving.
		return
	}
	if cs == r.certStamp && ks == r.keyStamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if cs != r.failed {
			r.log.Warn("TLS certificate changed on disk but does not load; keeping the previous one", "cert", r.certFile, "key", r.keyFile, "err", err)
			r.failed = cs
			if r.Observe != nil {
				r.Observe(false)
			}
		}
		return
	}
	r.certStamp, r.keyStamp = cs, ks
	r.failed = fileStamp{}
	if olderThan(&cert, r.cert) {
		// The Secret watch already delivered a later certificate; the
		// kubelet's copy on disk lags behind it.
		return
	}
	r.cert = &cert
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	if r.Observe != nil {
		r.Observe(true)
	}
}

// olderThan reports whether a was issued before b (by NotBefore).
func olderThan(a, b *tls.Certificate) bool {
	if a == nil || b == nil || a.Leaf == nil || b.Leaf == nil {
		return false
	}
	return a.Leaf.NotBefore.Before(b.Leaf.NotBefore)
}

// Offer serves the PEM pair from now on if it loads and was issued no
// earlier than the certificate served now; it reports whether it did. The
// serving Secret watch (WatchServingSecret) calls it, so a renewal reaches
// new handshakes within a second, not after the kubelet's Secret-volume
// refresh (a minute or more).
func (r *CertReloader) Offer(certPEM, keyPEM []byte) (bool, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("load TLS key pair from secret: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if olderThan(&cert, r.cert) || (r.cert != nil && r.cert.Leaf != nil && cert.Leaf.SerialNumber.Cmp(r.cert.Leaf.SerialNumber) == 0) {
		return false, nil
	}
	r.cert = &cert
	return true, nil
}

// NotAfter is the expiry of the certificate served now.
func (r *CertReloader) NotAfter() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert == nil || r.cert.Leaf == nil {
		return time.Time{}
	}
	return r.cert.Leaf.NotAfter
}

// TLSConfig returns a server TLS configuration (TLS 1.2 or later) that takes
// its certificate from r.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
