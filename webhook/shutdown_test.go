package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/certs"
)

// TestShutdownDrains stops the real HTTPS stack while clients open a new
// connection per request (as the API server does after keep-alives are off)
// and one slow request is in flight. With a drain delay, /readyz fails at
// once, no request in the delay is refused, the slow request completes, and
// afterwards the port is closed. Without one (the old behaviour), requests
// right after the stop signal are refused: the case that lost admissions.
func TestShutdownDrains(t *testing.T) {
	for _, tc := range []struct {
		name        string
		delay       time.Duration
		wantRefused bool
	}{
		{"drain 3s", 3 * time.Second, false},
		{"no drain (old behaviour)", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := servingDir(t)
			r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), quietLogger())
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.Handle("/", newTestServer(t, testConfig()))
			mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
				time.Sleep(1500 * time.Millisecond)
				w.Write([]byte("done"))
			})
			gate := NewReadinessGate(mux)
			hs := NewHTTPServer(gate, r, quietLogger())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			url := "https://" + ln.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- ServeDrained(ctx, hs, ln, gate, Drain{Delay: tc.delay, Timeout: 5 * time.Second}, quietLogger())
			}()
			client := newConnPerRequestClient(t, filepath.Join(dir, "ca.crt"))
			if code := status(client, url+"/readyz"); code != 200 {
				t.Fatalf("/readyz before stop: %d", code)
			}

			slow := make(chan error, 1)
			go func() {
				resp, err := client.Get(url + "/slow")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = errors.New(resp.Status)
					}
				}
				slow <- err
			}()
			time.Sleep(100 * time.Millisecond) // the slow request is in flight

			// Load: 4 clients, a new connection per request, until well
			// before the drain delay ends (or 700ms without a delay): a
			// request started late on a loaded machine may otherwise still be
			// in its TLS handshake when the listener closes on purpose.
			window := max(tc.delay-1500*time.Millisecond, 700*time.Millisecond)
			var ok, refused, other atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			stopAt := time.Now().Add(window)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stopAt) {
						resp, err := client.Get(url + "/healthz")
						switch {
						case err == nil:
							resp.Body.Close()
							ok.Add(1)
						case errors.Is(err, syscall.ECONNREFUSED):
							refused.Add(1)
						default:
							other.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			time.Sleep(50 * time.Millisecond)
			cancel()
			t0 := time.Now()
			if tc.delay > 0 {
				// Readiness fails first, within moments. Polled: ServeDrained
				// sees the cancel on its own goroutine, so a single read
				// right after cancel() races it (it failed CI once with 200).
				// Negative control: without gate.StartDraining in
				// ServeDrained, /readyz stays 200 and this fails.
				code := status(client, url+"/readyz")
				for code != http.StatusServiceUnavailable && time.Since(t0) < 500*time.Millisecond {
					time.Sleep(10 * time.Millisecond)
					code = status(client, url+"/readyz")
				}
				if code != http.StatusServiceUnavailable {
					t.Errorf("/readyz %s after the stop signal: %d, want 503", time.Since(t0).Round(time.Millisecond), code)
				}
			}
			wg.Wait()
			t.Logf("during the window: %d ok, %d refused, %d other errors (%v)", ok.Load(), refused.Load(), other.Load(), firstErr.Load())
			if tc.wantRefused {
				if refused.Load()+other.Load() == 0 {
					t.Error("without a drain delay no request failed: the test cannot tell draining from not draining")
				}
			} else {
				if refused.Load() != 0 || other.Load() != 0 {
					t.Errorf("%d refused and %d failed requests during the drain (first: %v), want 0", refused.Load(), other.Load(), firstErr.Load())
				}
				if ok.Load() < 5 {
					t.Errorf("only %d requests served during the drain", ok.Load())
				}
			}
			if err := <-slow; err != nil {
				t.Errorf("in-flight request across the shutdown: %v", err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ServeDrained: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeDrained did not return")
			}
			if elapsed := time.Since(t0); elapsed < tc.delay {
				t.Errorf("returned %s after the stop signal, before the %s delay", elapsed, tc.delay)
			}
			if _, err := client.Get(url + "/healthz"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("after shutdown: %v, want connection refused", err)
			}
		})
	}
}

func newConnPerRequestClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
	}}
}

func status(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestShutdownKeepAliveClients: clients like the API server (HTTP/1.1 only,
// a pool of keep-alive connections, POST bodies larger than one write
// buffer, no retry of a POST) across the stop signal. A server that closes
// its idle keep-alive connections when draining starts races every client
// that has just taken one of them from its pool ("write: broken pipe"; the
// API server then admits the pod unpatched). Draining must instead answer
// each request with Connection: close, so the client drops the connection
// only after a response.
func TestShutdownKeepAliveClients(t *testing.T) {
	dir := servingDir(t)
	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/post", func(w http.ResponseWriter, req *http.Request) {
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	})
	gate := NewReadinessGate(mux)
	hs := NewHTTPServer(gate, r, quietLogger())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + "/post"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const delay = 2 * time.Second
	done := make(chan error, 1)
	go func() {
		done <- ServeDrained(ctx, hs, ln, gate, Drain{Delay: delay, Timeout: 5 * time.Second}, quietLogger())
	}()

	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only, as the API server
		MaxIdleConnsPerHost: 64,
	}}
	body := bytes.Repeat([]byte("x"), 6<<10) // larger than the transport's 4 KiB write buffer

	// Clients run from before the stop signal until well before the delay
	// ends (the listener then closes on purpose).
	var ok, closed, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stopAt := time.Now().Add(300*time.Millisecond + delay - 700*time.Millisecond)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stopAt) {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
				if resp.Close {
					closed.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the pool is full of idle connections
	cancel()
	wg.Wait()
	t.Logf("%d requests answered (%d with Connection: close), %d failed (first: %v)", ok.Load(), closed.Load(), failed.Load(), firstErr.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests of keep-alive clients failed across the stop signal (first: %v), want 0", failed.Load(), firstErr.Load())
	}
	if closed.Load() == 0 {
		t.Errorf("no response during the drain carried Connection: close: clients would keep their connections to a replica that is going away")
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeDrained: %v", err)
	}
}

// servingDir writes a test CA and a serving certificate for localHosts
// (ca.crt, tls.crt, tls.key) into a new temporary directory.
func servingDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteServing(dir, ca, localHosts, time.Hour, true); err != nil {
		t.Fatal(err)
	}
	return dir
}
