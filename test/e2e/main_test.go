//go:build e2e

// Package e2e runs dnsguard on a real two-node Kubernetes started by
// test/cluster (dgcluster run --nodes 2; the scenarios other than n1 and the fault
// matrix's node cache update keep to the first node): kubelet, containerd, kube-proxy and CoreDNS,
// the release under test (make release) pushed to a registry on the node
// and installed from it with helm as users install it (hooks, the
// certificate controller, the webhook Deployment behind its Service, the
// chart's RBAC), upgraded from the previous release, and
// scenarios asserted inside running pods. The binary runs inside the node's
// network namespace, so Service and pod IPs are reachable directly.
package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// Names fixed by the chart (release "dnsguard") and the contracts.
const (
	release        = "dnsguard"
	releaseNS      = "dnsguard-system"
	fullname       = "dnsguard" // <release>-<chart> collapses to the release name
	webhookConfig  = "dnsguard"
	tlsSecret      = "dnsguard-tls"
	enabledLabel   = "dnsguard.io/enabled"
	modeAnnotation = "dnsguard.io/mode"
	injectedAnno   = "dnsguard.io/injected"
	sidecarName    = "dnsguard-resolver"
	clusterDNSIP   = "10.96.0.10"
	chartDir       = "charts/dnsguard"

	nsEnabled = "e2e-enabled"
	nsPlain   = "e2e-plain"
	nsOther   = "e2e-other" // holds a Service looked up from other namespaces
)

// The test images hack/images.sh builds, tagged with the chart's appVersion
// like the product images (set by loadEnv).
var glibcImage, muslImage, busyboxImage string

// scenarios in run order, for the report when a run stops early.
var scenarioTitles = []struct{ id, title string }{
	{"c0", "the release pushed to the node's registry, cosign verify, helm install oci:// --version: hooks, certificate controller, webhook, RBAC; helm test"},
	{"c1", "dnsconfig mode: glibc and musl Deployment pods, resolv.conf = /explain, short/FQDN/other-namespace names resolve"},
	{"c2", "sidecar mode under Pod Security restricted: Ready, sidecar first, probes, lookups via 127.0.0.1, app stops first"},
	{"c3", "admission: unlabelled and kube-system untouched; mode off, hostNetwork, Default/None; server dry-run"},
	{"c4", "failure policy: webhook scaled to 0 -> pods created unpatched and Running; scaled back -> patched"},
	{"c5", "certificate controller: 30 s leaves and a 75 s CA renewed while a pod is created every 200 ms: no failed admission, no unpatched pod"},
	{"c6", "node-local cache: DaemonSet, 169.254.20.10 answers, pods use it first and it answers their lookups (metrics); its rolling update under load is fault (e) of m1"},
	{"n1", "two nodes: kubectl drain of the node with one webhook replica (one per node) while pods are created at 20/s and a second eviction is tried: 0 unpatched, 0 failed, the PDB refuses, never both replicas down"},
	{"d1", "dual-stack: kube-dns dual-stack in place, then IPv6 only; the webhook's nameservers from its clusterIPs, the sidecar on 127.0.0.1, the node cache on 169.254.20.10 and fd00::10 in one process, glibc and musl A+AAAA through default, dnsconfig, sidecar and node-local with IPv6 nameservers"},
	{"c7", "helm upgrade keeps pods patched; helm uninstall leaves nothing the README does not mention"},
	{"c8", "helm install right after helm uninstall: no certificate Secret left behind, pods patched from the moment install --wait returns (the admission check hook), and an install whose webhook is unreachable fails in that hook"},
	{"u1", "upgrade from the previous release (CHANGELOG.md, built from its commit) under pod creation and node-cache lookups, then helm rollback: 0 unpatched, CA kept, 0 failed lookups"},
	{"m1", "fault matrix on the node: 2 % loss, upstream 1,024 pkt/s, CoreDNS and node cache rollouts, upstream outage; four modes × glibc/musl × per-lookup/long-lived (docs/fault-matrix.md)"},
	{"r1", "race lab on the node: emulated insert_failed on kube-proxy's DNAT to CoreDNS, glibc/musl pods in each mode (docs/race-lab-cluster.md)"},
	{"k1", "kube-proxy switched to the other mode in the same cluster (the old mode's rules gone), then c6 and the race lab's default, dnsconfig, sidecar and node-local rows in it"},
}

func TestMain(m *testing.M) {
	if err := loadEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	code := m.Run()
	for _, s := range scenarioTitles {
		if !slices.ContainsFunc(results, func(r result) bool { return r.id == s.id }) {
			record(result{id: s.id, title: s.title, status: "NOT RUN"})
		}
	}
	if err := writeReport(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: write report:", err)
	}
	os.Exit(code)
}

func title(id string) string {
	for _, s := range scenarioTitles {
		if s.id == id {
			return s.title
		}
	}
	return id
}

// TestE2E runs the scenarios in order: later ones use the installation made
// by c0, c7 uninstalls it, c8 installs and uninstalls it again, and u1
// installs the previous release, upgrades, rolls back and uninstalls.
func TestE2E(t *testing.T) {
	ctx := t.Context()
	run := func(id string, fn func(t *testing.T)) bool { return scenario(t, id, title(id), fn) }
	if !run("c0", func(t *testing.T) { c0Install(ctx, t) }) {
		t.Fatal("installation failed; the scenarios need it")
	}
	run("c1", func(t *testing.T) { c1DNSConfig(ctx, t) })
	run("c2", func(t *testing.T) { c2Sidecar(ctx, t) })
	run("c3", func(t *testing.T) { c3Admission(ctx, t) })
	run("c4", func(t *testing.T) { c4WebhookDown(ctx, t) })
	run("c5", func(t *testing.T) { c5Renewal(ctx, t) })
	run("c6", func(t *testing.T) { c6NodeLocal(ctx, t) })
	run("n1", func(t *testing.T) { n1Drain(ctx, t) })
	run("d1", func(t *testing.T) { d1DualStack(ctx, t) })
	if run("c7", func(t *testing.T) { c7UpgradeUninstall(ctx, t) }) {
		run("c8", func(t *testing.T) { c8Reinstall(ctx, t) })
	}
	// Last: it installs the previous release from nothing (as c8 leaves
	// the cluster) and uninstalls at the end, so no other scenario needs an
	// install of its own for it.
	run("u1", func(t *testing.T) { u1Upgrade(ctx, t) })
}
