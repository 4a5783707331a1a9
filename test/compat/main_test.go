//go:build apiserver

// Package compat runs dnsguard against each Kubernetes API server it
// claims to support, oldest first: the chart's kubeVersion floor (>=1.29,
// kube-apiserver v1.29.6 with the SidecarContainers gate on, its default,
// and off, which 1.29 to 1.32 allow) and the version of the tool cache
// (v1.37.2). Each is test/cluster's control plane alone (etcd and
// kube-apiserver in a network namespace, no node: admission runs in full,
// pods stay Pending), started once and used by every check:
//
//   - chart_test.go: the chart rendered as a user of that version would
//     (helm template --kube-version), defaults and nodeCache on, every
//     object dry-run created with strict field validation.
//   - webhook_test.go: the real webhook binary, called by the API server
//     through the chart's MutatingWebhookConfiguration, on sidecar-mode
//     pods: a native sidecar where the server keeps it, dnsconfig with a
//     warning and a metric where it does not, and the rejection that
//     fallback prevents.
//   - corpus_test.go: the golden pods of webhook/testdata, dry-run created
//     on v1.29.6 (test/quota does the same on v1.37.2).
//
// Run with hack/compat-test.sh (make compat-test). CLUSTER_BIN names the
// directory with etcd, kube-apiserver, kube-apiserver-1.29 and helm
// (default: the repository's bin/). Only the 1.29 API server is built, not
// its kubelet (test/cluster/doc.go says why).
package compat

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// server is one API server configuration the suite runs against.
type server struct {
	name    string          // subtest name
	bin     string          // kube-apiserver binary in CLUSTER_BIN
	version string          // what it must report (its build's ldflags)
	gates   map[string]bool // --feature-gates
	// native: the server keeps restartPolicy: Always on init containers.
	native bool
	// corpus: also dry-run create webhook/testdata's golden pods.
	corpus bool
}

var servers = []server{
	{name: "v1.29.6-sidecars-on", bin: "kube-apiserver-1.29", version: "v1.29.6",
		gates: map[string]bool{"SidecarContainers": true}, native: true, corpus: true},
	{name: "v1.29.6-sidecars-off", bin: "kube-apiserver-1.29", version: "v1.29.6",
		gates: map[string]bool{"SidecarContainers": false}, native: false},
	{name: "v1.37.2", bin: "kube-apiserver", version: "v1.37.2", native: true},
}

var (
	binDir     string // CLUSTER_BIN
	webhookBin string // built from this tree by TestMain
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	binDir = os.Getenv("CLUSTER_BIN")
	if binDir == "" {
		binDir = filepath.Join("..", "..", "bin")
	}
	var err error
	if binDir, err = filepath.Abs(binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "dnsguard-compat.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// The webhook as shipped: the command of this tree, not the handler in
	// process, so its flags, start-up discovery and metrics are the real ones.
	webhookBin = filepath.Join(tmp, "webhook")
	build := exec.Command("go", "build", "-trimpath", "-o", webhookBin, "./cmd/webhook")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/webhook: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TestCompat starts each server once, in turn (test/cluster allows one
// cluster per machine), and runs every check against it.
func TestCompat(t *testing.T) {
	start := time.Now()
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			t0 := time.Now()
			c := up(t, s)
			t.Run("version", func(t *testing.T) { checkVersion(t, c, s) })
			t.Run("chart", func(t *testing.T) { testChart(t, c, s) })
			if s.corpus {
				t.Run("corpus", func(t *testing.T) { testCorpus(t, c) })
			}
			t.Run("webhook", func(t *testing.T) { testWebhook(t, c, s) })
			t.Logf("%s: %.1fs with start-up", s.name, time.Since(t0).Seconds())
		})
	}
	t.Logf("all servers: %.1fs", time.Since(start).Seconds())
}

// up starts s's control plane for the duration of t.
func up(t *testing.T, s server) *cluster.Cluster {
	t.Helper()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[control plane %s %s] %s\n", s.name, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	cfg := cluster.Config{
		Bin: binDir, ControlPlaneOnly: true, StateDir: cluster.DefaultStateDir, Log: logf,
		APIServer: s.bin, FeatureGates: s.gates,
	}
	if d := os.Getenv("COMPAT_LOG_DIR"); d != "" {
		cfg.LogDir = filepath.Join(d, s.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Up(ctx, cfg)
	if err != nil {
		// Up has already torn down what it started.
		t.Fatalf("control plane %s: %v", s.name, err)
	}
	t.Cleanup(func() {
		if err := c.Down(); err != nil {
			t.Errorf("control plane teardown: %v", err)
		}
	})
	return c
}

// checkVersion makes sure the server is the one the subtest is named after
// (the build's version ldflags, and which binary Config.APIServer ran): a
// v1.37.2 answering in place of v1.29.6 would pass everything else.
func checkVersion(t *testing.T, c *cluster.Cluster, s server) {
	v, err := c.Client().Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != s.version {
		t.Fatalf("%s reports %s, want %s", s.bin, v.GitVersion, s.version)
	}
}
