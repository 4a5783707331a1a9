//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// k1SwitchRows are the race lab's configurations k1 runs in the second
// mode: the Kubernetes default and the three dnsguard modes. The negative
// controls (c′, c✗, d✗) prove the lab can fail, which does not depend on
// kube-proxy's mode; they run in the first mode (r1).
var k1SwitchRows = []string{"off", "dnsconfig", "sidecar", "nodelocal"}

// k1N is the lookups per row in the second mode: the default rows stall 5
// s per drop (1 in 10 colliding packets), so 50 lookups keep k1 within
// the budget of make test and still drop several packets per row.
const k1N = 50

// TestSwitchProxyMode is scenario k1: kube-proxy in the other mode than the
// run started with (nftables after the default iptables), in the same
// cluster: dgcluster restarts kube-proxy in that mode and checks that it
// serves the kubernetes Service with it and that the previous mode's rules
// are gone (kube-proxy removes them at start). Then the chart is installed,
// c6 (the node cache, its NOTRACK beside kube-proxy's rules) and the race
// lab's default, dnsconfig, sidecar and node-local rows run in that mode.
// A second cluster would cost its bring-up, c0's publish and install, and
// teardown again (the budget of make test has no room for it).
//
// It must run after every other test (it leaves kube-proxy in the other
// mode): Go runs tests in the order of their files' names, and this file
// sorts after racelab_test.go (TestRaceLab) and matrix_test.go
// (TestFaultMatrix); every scenario checks kube-proxy's mode when it starts
// (scenario), so one that ran after the switch would fail, not pass under
// the wrong name.
func TestSwitchProxyMode(t *testing.T) {
	ctx := t.Context()
	scenario(t, "k1", title("k1"), func(t *testing.T) { k1SwitchProxyMode(ctx, t) })
}

func k1SwitchProxyMode(ctx context.Context, t *testing.T) {
	from := e2e.proxyMode
	to := from.Other()
	left, err := cluster.ProxyRulesPresent(ctx, "", from)
	if err != nil || left == "" {
		t.Fatalf("before the switch: kube-proxy's %s rules not found (%q, %v)", from, left, err)
	}
	took, err := switchProxyMode(ctx, to)
	if err != nil {
		t.Fatalf("switch kube-proxy from %s to %s mode: %v", from, to, err)
	}
	t.Logf("kube-proxy switched from %s to %s mode in %.1fs; before: %s; after: none of it (dgcluster checked)", from, to, took, left)
	// What dgcluster checked, seen from here: the other mode's rules gone.
	if left, err := cluster.ProxyRulesPresent(ctx, "", from); err != nil || left != "" {
		t.Fatalf("after the switch to %s: %s rules still present: %q %v", to, from, left, err)
	}
	installedHere := (&clusterLab{t: t, l: &lab.Lab{Log: t.Logf}}).ensureInstalled(ctx, t)
	t.Cleanup(func() {
		if installedHere {
			if _, err := tool(context.Background(), "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "2m"); err != nil {
				t.Errorf("helm uninstall after k1: %v", err)
			}
		}
	})
	createNamespace(ctx, t, nsEnabled, map[string]string{enabledLabel: "true"})
	if !t.Run("c6", func(t *testing.T) { c6NodeLocal(ctx, t) }) {
		t.Errorf("c6 failed with kube-proxy in %s mode", to)
	}
	t.Run("r1", func(t *testing.T) {
		raceLabRun(ctx, t, func(o *lab.Options) {
			o.Modes = slices.DeleteFunc(o.Modes, func(m string) bool { return !slices.Contains(k1SwitchRows, m) })
			o.Subset, o.ProbeN, o.Docs = true, 0, false
			o.N = min(o.N, k1N)
			o.Out = filepath.Join(e2e.logs, "racelab-"+string(to))
			o.Command = "make e2e (scenario k1: kube-proxy switched to " + string(to) + " mode)"
		})
	})
}
