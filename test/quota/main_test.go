//go:build apiserver

// Package quota puts what the webhook writes in front of a real
// kube-apiserver: the control plane of test/cluster (etcd and
// kube-apiserver in their own network namespace, no node), so admission
// runs in full while pods stay Pending.
//
//   - corpus_test.go: every golden pod of webhook/testdata is dry-run
//     created; the API server's own pod validation is the judge of what a
//     patch may contain (nameserver and search limits, option names,
//     container and sysctl rules), not a copy of its rules.
//   - quota_test.go: pods patched in sidecar mode under ResourceQuota and
//     LimitRange, and a Guaranteed pod staying Guaranteed.
//
// Run with hack/quota-test.sh (make quota-test); CLUSTER_BIN names the
// directory with etcd and kube-apiserver (default: the repository's bin/).
package quota

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/dnsguard/dnsguard/test/cluster"
)

var client kubernetes.Interface

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	bin := os.Getenv("CLUSTER_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[control plane %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Up(ctx, cluster.Config{Bin: bin, ControlPlaneOnly: true, StateDir: cluster.DefaultStateDir, Log: logf})
	if err != nil {
		// Up has already torn down what it started.
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		return 1
	}
	defer func() {
		if err := c.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "control plane teardown: %v\n", err)
		}
	}()
	client = c.Client()
	return m.Run()
}
