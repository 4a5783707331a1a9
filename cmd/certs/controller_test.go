package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSplitList(t *testing.T) {
	got := splitList(" 127.0.0.1, localhost,,::1 ")
	if want := []string{"127.0.0.1", "localhost", "::1"}; !slices.Equal(got, want) {
		t.Errorf("splitList = %q, want %q", got, want)
	}
	if got := splitList(""); len(got) != 0 {
		t.Errorf("splitList(\"\") = %q, want empty", got)
	}
}

// TestControllerFlagErrors: bad values fail before anything is written or
// any API is called, with a message naming the flag or the value.
func TestControllerFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "nowhere to keep"},
		{[]string{"--secret-name=s"}, `--ca-secret-name=""`},
		{[]string{"--secret-name=s", "--ca-secret-name=s", "--namespace=n", "--service-name=x"}, `both "s"`},
		{[]string{"--secret-name=s", "--ca-secret-name=c", "--service-name=x"}, "--namespace is required"},
		{[]string{"--out-dir=" + dir, "--validity=0s"}, "--validity=0s: must be positive"},
		{[]string{"--out-dir=" + dir, "--resync=-1m"}, "--resync=-1m0s"},
		{[]string{"--out-dir=" + dir, "--validity=tomorrow"}, `invalid value "tomorrow"`},
		{[]string{"--out-dir=" + dir, "--validity=10h", "--ca-validity=5h"}, "CA validity 5h0m0s must be longer"},
		{[]string{"--out-dir=" + dir, "--hosts=ok.example,not a host"}, `"not a host"`},
		{[]string{"--out-dir=" + dir, "--log-level=loud"}, `--log-level="loud"`},
		{[]string{"--out-dir=" + dir, "--lease-duration=1s"}, "--lease-duration=1s"},
		{[]string{"--out-dir=" + dir, "stray"}, "unexpected arguments"},
	} {
		_, err := parseControllerFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseControllerFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused run wrote %d files", len(entries))
	}
}

// TestControllerOnceOutDir is what make run does: `certs controller --once
// --out-dir=DIR` makes a CA and a serving certificate for the loopback
// names; a second run leaves a current certificate alone.
func TestControllerOnceOutDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	run := func() []byte {
		t.Helper()
		if err := runController([]string{"--once", "--out-dir=" + dir, "--log-level=warn"}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := run()
	for _, f := range []string{"ca.crt", "tls.key", "ca/ca.crt", "ca/ca.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if string(run()) != string(first) {
		t.Error("a second --once run replaced a current certificate")
	}
	o, err := parseControllerFlags([]string{"--out-dir=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1", "localhost", "::1"}; !slices.Equal(o.cfg.Hosts, want) {
		t.Errorf("default hosts %q, want %q", o.cfg.Hosts, want)
	}
}

// TestReadyzFollowsTrust: /readyz is the chart's readiness probe and must
// fail, with the reason, while the controller's Trusted check fails; /healthz
// stays up. Negative control: serveMetrics' old "ok" handler on /readyz
// answers 200 in the untrusted case and fails this test.
func TestReadyzFollowsTrust(t *testing.T) {
	var trustErr error
	stop, addr := startMetrics(t, func(context.Context) error { return trustErr })
	defer stop()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("trusted: /readyz %d, want 200", code)
	}
	trustErr = errors.New("webhook pods.dnsguard.io: caBundle holds no CA of the serving certificate")
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "caBundle") {
		t.Errorf("untrusted: /readyz %d %q, want 503 with the reason", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("untrusted: /healthz %d, want 200 (the process is fine)", code)
	}
}

func startMetrics(t *testing.T, ready func(context.Context) error) (func(), string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stop, err := serveMetrics(addr, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), ready)
	if err != nil {
		t.Fatal(err)
	}
	return stop, addr
}
