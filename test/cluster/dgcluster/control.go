package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// The control socket lets the command dgcluster runs change the running
// cluster where only dgcluster can: it owns the processes and the state
// file that teardown and the next run's cleanup rely on. One operation:
//
//	POST /proxy-mode  body "iptables" or "nftables"
//
// restarts kube-proxy in that mode and answers once kube-proxy serves
// Services in it and the other mode's rules are gone (Cluster.SetProxyMode),
// with the seconds it took; an error answers 500 with the reason. The e2e
// suite uses it to run its node-cache and race-lab checks in the second
// mode without a second cluster.

// serveControl listens on a unix socket in the run directory (root only)
// and returns its path and a function that stops it.
func serveControl(c *cluster.Cluster) (string, func(), error) {
	path := filepath.Join(c.RunDir(), "control.sock")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return "", nil, fmt.Errorf("control socket: %w", err)
	}
	// One change at a time: Cluster is not safe for concurrent use.
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /proxy-mode", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mode := cluster.ProxyMode(strings.TrimSpace(string(b)))
		if err := mode.Valid(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		logf("control: switching kube-proxy from %s to %s mode", c.ProxyMode(), mode)
		took, err := c.SetProxyMode(r.Context(), mode)
		if err != nil {
			logf("control: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %.1f\n", mode, took.Seconds())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("control socket: %v", err)
		}
	}()
	return path, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // waits for a switch under way
		_ = os.Remove(path)
	}, nil
}
