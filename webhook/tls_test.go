package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsguard/dnsguard/certs"
)

var localHosts = []string{"127.0.0.1", "localhost"}

// startTLS runs handler behind the real HTTPS stack (CertReloader,
// NewHTTPServer, Serve) on 127.0.0.1 with certificates in dir.
func startTLS(t *testing.T, dir string, h http.Handler, obs func(bool)) (addr string, stop func() error) {
	t.Helper()
	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	r.Observe = obs
	hs := NewHTTPServer(h, r, quietLogger())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeDrained(ctx, hs, ln, nil, Drain{Timeout: 5 * time.Second}, quietLogger()) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return ln.Addr().String(), stop
}

func clientFor(t *testing.T, caFile string, mutate func(*tls.Config)) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("bad CA PEM")
	}
	cfg := &tls.Config{RootCAs: pool}
	if mutate != nil {
		mutate(cfg)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 1}}
}

// get fetches url and returns the serving certificate's serial and whether
// the connection was reused.
func get(t *testing.T, c *http.Client, url string) (serial *big.Int, reused bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, reused
}

func TestTLSServingAndRotation(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteServing(dir, ca, localHosts, time.Hour, true); err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, testConfig())
	// Atomics: the callback runs on the server's handshake goroutine.
	var reloads, failures atomic.Int32
	addr, stop := startTLS(t, dir, srv, func(ok bool) {
		if ok {
			reloads.Add(1)
		} else {
			failures.Add(1)
		}
		srv.metrics.CertReloads.WithLabelValues(map[bool]string{true: "ok", false: "error"}[ok]).Inc()
	})
	url := "https://" + addr + "/healthz"
	caFile := filepath.Join(dir, "ca.crt")

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c := clientFor(t, caFile, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
		if _, err := c.Get(url); err == nil {
			t.Fatal("a TLS 1.1 client connected")
		}
	})
	t.Run("plain HTTP refused", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain HTTP got 200")
			}
		}
	})

	keepAlive := clientFor(t, caFile, nil)
	first, _ := get(t, keepAlive, url)
	if _, reused := get(t, keepAlive, url); !reused {
		t.Fatal("keep-alive connection not reused before rotation")
	}

	// Rotate: same CA, new serving certificate, files replaced on disk.
	if err := certs.WriteServing(dir, ca, localHosts, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	// The open keep-alive connection keeps working, with the old certificate.
	serial, reused := get(t, keepAlive, url)
	if !reused || serial.Cmp(first) != 0 {
		t.Fatalf("open connection after rotation: reused=%v serial changed=%v", reused, serial.Cmp(first) != 0)
	}
	// A new handshake sees the new certificate.
	second, reused := get(t, clientFor(t, caFile, nil), url)
	if reused || second.Cmp(first) == 0 {
		t.Fatalf("new connection still gets the old certificate (reused=%v)", reused)
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("reloads = %d, want 1", n)
	}

	// A broken rotation (garbage certificate) keeps serving the last good one.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, _ := get(t, clientFor(t, caFile, nil), url)
	get(t, clientFor(t, caFile, nil), url)
	if third.Cmp(second) != 0 {
		t.Fatal("certificate changed after a broken rotation")
	}
	if n := failures.Load(); n != 1 {
		t.Errorf("failed reloads reported %d times, want once per broken version", n)
	}
	if got := testutil.ToFloat64(srv.metrics.CertReloads.WithLabelValues("error")); got != 1 {
		t.Errorf("cert_reloads{error} = %v", got)
	}
	// And recovers when a good pair arrives.
	if err := certs.WriteServing(dir, ca, localHosts, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if fourth, _ := get(t, clientFor(t, caFile, nil), url); fourth.Cmp(second) == 0 {
		t.Fatal("good certificate after a broken one not picked up")
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestNewCertReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewCertReloader(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"), nil); err == nil {
		t.Fatal("missing files accepted")
	}
	os.WriteFile(filepath.Join(dir, "a.crt"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "a.key"), []byte("y"), 0o600)
	if _, err := NewCertReloader(filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"), nil); err == nil {
		t.Fatal("garbage files accepted")
	}
}

// TestGracefulShutdown: a request in flight when shutdown starts completes.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteServing(dir, ca, localHosts, time.Hour, true); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	})
	addr, stop := startTLS(t, dir, slow, nil)
	c := clientFor(t, filepath.Join(dir, "ca.crt"), nil)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	r := <-res
	if r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if _, err := c.Get("https://" + addr + "/"); err == nil {
		t.Fatal("server still accepting after shutdown")
	}
}
