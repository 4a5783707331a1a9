// Package loopreg runs distribution's registry (bin/registry, built by
// hack/build-tools.sh) on 127.0.0.1 with its storage in a temporary
// directory: the release signs in one, and the release test publishes into a
// fresh one. Nothing listens beyond loopback, and Stop removes everything.
package loopreg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a registry may take to answer /v2/.
const startTimeout = 30 * time.Second

// Registry is one running registry process.
type Registry struct {
	Host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	dir  string
	done chan error
	once sync.Once
	err  error
}

// config is distribution's configuration: filesystem storage, deletes
// allowed (the release test tampers with tags), loopback only.
const config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`

// Start runs binary (the registry command) and waits until it answers.
// Its output goes to logw (nil: discarded).
func Start(ctx context.Context, binary string, logw io.Writer) (*Registry, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("registry binary: %w (hack/build-tools.sh registry builds it)", err)
	}
	dir, err := os.MkdirTemp("", "dnsguard-registry-")
	if err != nil {
		return nil, fmt.Errorf("registry storage: %w", err)
	}
	host, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, config, filepath.Join(dir, "storage"), host), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("registry config: %w", err)
	}
	if logw == nil {
		logw = io.Discard
	}
	cmd := exec.Command(binary, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logw, logw
	// Its own process group: the registry is ended by PID, never by name.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	r := &Registry{Host: host, cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	if err := r.wait(ctx); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the registry binds it; Start then fails on the wait with
// the registry's own error in its log.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// wait polls /v2/ (200 from a registry without auth) until startTimeout.
func (r *Registry) wait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-r.done:
			return fmt.Errorf("registry on %s exited before answering: %v", r.Host, err)
		case <-ctx.Done():
			return fmt.Errorf("registry on %s did not answer /v2/ within %s", r.Host, startTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the registry (SIGTERM, then SIGKILL after 5 s) and removes its
// storage. Later calls return the first one's result.
func (r *Registry) Stop() error {
	r.once.Do(func() { r.err = r.stop() })
	return r.err
}

func (r *Registry) stop() error {
	var err error
	if r.cmd.Process != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
			err = errors.New("registry ignored SIGTERM for 5 s; killed")
		}
	}
	return errors.Join(err, os.RemoveAll(r.dir))
}
