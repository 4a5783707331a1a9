//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// The race lab's real-node backend (issue 11, item 5): the lab of
// test/racelab/lab — its emulated conntrack insert_failed, conntrack
// reading, clients and report — applied in the node's network namespace to
// what kube-proxy DNATs to the two CoreDNS pods, measured with glibc and
// musl client pods in each dnsguard configuration. The report goes to
// .cache/e2e/logs/racelab; RACE_DOCS=1 (make race-lab-docs) also rewrites
// docs/race-lab-cluster.{md,svg}. Knobs: as the netns backend
// (test/racelab/netns), with RACE_PROBE_N 200 by default.
//
// Files: racelab_test.go the entry and the modes; racelab_zone_test.go what
// the lab relies on (kube-dns, kube-proxy's DNAT, the zone's answers);
// racelab_rows_test.go the probe and one configuration's rows;
// racelab_pods_test.go the client pods; racelab_podconfig_test.go what the
// webhook and kubelet gave them; racelab_controls_test.go the negative
// controls and the other specs made from the webhook's;
// racelab_counters_test.go the resolvers' own counters;
// racelab_nodecache_test.go the node cache on and off. What is not
// e2e-specific (expectations, the emulation, parsers, the report) is in
// test/racelab/lab with unit tests.

const (
	nsRacePlain = "racelab-plain"
	nsRaceGuard = "racelab-guarded"
)

// raceZone is what the clients look up under: lookup i of a row asks for
// "<i>.<run>-<row>.wildcard.dnsguard.test." (gailoop -u; absolute, so no
// search path), which CoreDNS forwards to the node's upstream (dnsmasq on
// 10.200.0.1, test/cluster: A 10.200.9.9, AAAA fd00:200::9, TTL 30). Nobody asked for
// the name before, so no cache on the way (the sidecar's, the node cache's,
// CoreDNS's) can answer it: every lookup crosses the node, and CoreDNS
// answers the A only after a round trip of its own, so the AAAA reaches
// conntrack while the A is unanswered, as when the DNS pod is on another
// node.
var raceZone = "wildcard." + cluster.TestZone

// raceNameShown is the name as the page shows it.
var raceNameShown = "<i>.<run>-<row>." + raceZone + "."

// clusterMode is a configuration with the namespace and annotation of its
// pods.
type clusterMode struct {
	lab.Mode
	ns, annotation string
}

// sideBySide groups the configurations whose pods run at once: each pod has
// its own drop rule, counters, names and (in the sidecar rows) resolver, so
// none sees another's packets. The node-local ones run alone after them:
// they turn the node cache on, and their checks read its counters, which
// are the node's.
const sideBySide = "pods-only"

// clusterModes: the configurations in table order.
var clusterModes = []clusterMode{
	{lab.Mode{Name: "off", Label: "a Kubernetes default (ClusterFirst)", How: "a pod in a namespace without the dnsguard.io/enabled label: the webhook is not called, kubelet writes the ClusterFirst resolv.conf", Group: sideBySide}, nsRacePlain, ""},
	{lab.Mode{Name: "dnsconfig", Label: "b dnsconfig", How: "a pod annotated `dnsguard.io/mode: dnsconfig` in a labelled namespace: the webhook set dnsPolicy None and dnsConfig, kubelet rendered it", Group: sideBySide}, nsRaceGuard, "dnsconfig"},
	{lab.Mode{Name: "sidecar", Label: "c sidecar", How: "a pod annotated `dnsguard.io/mode: sidecar`: the webhook injected the resolver as a native sidecar (restartPolicy Always init container from the chart's resolver image) and 127.0.0.1 as first nameserver; kubelet started it before the app", Group: sideBySide}, nsRaceGuard, "sidecar"},
	{lab.Mode{Name: "sidecar-nofallback", Label: "c′ sidecar, fallback off", How: "the pod spec the webhook gives a `dnsguard.io/mode: sidecar` pod (server-side dry run in the labelled namespace) with 127.0.0.1 as its only nameserver (as `sidecar.fallback=false` renders it), created in the unlabelled namespace: musl's parallel pair goes to the sidecar alone, so every packet the node sees from the pod is the sidecar's own upstream query", Group: sideBySide}, nsRacePlain, "sidecar"},
	{lab.Mode{Name: "sidecar-control", Label: "c✗ sidecar, upstream blackholed (negative control)", How: "the pod spec the webhook gives a `dnsguard.io/mode: sidecar` pod (server-side dry run in the labelled namespace), with the resolver's `--upstream` pointed at " + blackhole + ":53, created in the unlabelled namespace (the webhook does not touch it again); the lab's table drops every packet from the pod to " + blackhole + ", so the sidecar never gets an answer to forward", Group: sideBySide}, nsRacePlain, "sidecar"},
	{lab.Mode{Name: "nodelocal", Label: "d node-local", How: "after `helm upgrade --reuse-values --set nodeCache.enabled=true --set nodeCache.clusterDNS=10.96.0.10`: the chart's node cache DaemonSet on the node, pods annotated `dnsguard.io/mode: dnsconfig` get its link-local address first and the cluster DNS second"}, nsRaceGuard, "dnsconfig"},
	{lab.Mode{Name: "nodelocal-control", Label: "d✗ node-local, 169.254.20.10 blocked (negative control)", How: "as d, and the lab's table drops every packet from the pod to " + nodeLocalIP + ", so the node cache never sees the pod's queries"}, nsRaceGuard, "dnsconfig"},
}

// clusterLab is the lab.Backend on the node of test/cluster.
type clusterLab struct {
	t *testing.T
	// run makes this run's names its own (a cache of an earlier run on the
	// same cluster must not answer them).
	run           string
	l             *lab.Lab
	installedHere bool
	coreDNS       []string
	spreadChecked bool
	nodeCacheOK   bool
	podChecked    map[string]bool
	restore       func() // puts nodeCache.enabled back
}

// clientImage is the e2e client image of libc (the names are set in
// loadEnv, after package initialisation).
func clientImage(libc string) string {
	if libc == "musl" {
		return muslImage
	}
	return glibcImage
}

// TestRaceLab runs the lab as scenario r1. It installs the chart if it is not
// installed (and uninstalls it again), so it runs alone (make
// race-lab-cluster) or after TestE2E (make e2e).
func TestRaceLab(t *testing.T) {
	ctx := t.Context()
	scenario(t, "r1", title("r1"), func(t *testing.T) { raceLabRun(ctx, t, nil) })
}

// raceLabRun runs the lab; adjust, when not nil, changes the options read
// from the environment (k1 runs a subset of the rows in the second
// kube-proxy mode).
func raceLabRun(ctx context.Context, t *testing.T, adjust func(*lab.Options)) {
	c := &clusterLab{t: t, podChecked: map[string]bool{}, run: strconv.FormatInt(time.Now().UnixNano()/1e6%(36*36*36*36*36), 36)}
	command := "make race-lab-cluster (or make e2e, after the scenarios)"
	if os.Getenv("RACE_DOCS") == "1" {
		command = "RACE_DOCS=1 make race-lab-cluster (make race-lab-docs)"
	}
	o, err := lab.FromEnv(c.Modes(), 200, filepath.Join(e2e.logs, "racelab"), command)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(&o)
	}
	if err := os.RemoveAll(o.Out); err != nil {
		t.Fatal(err)
	}
	node := lab.Node{} // this binary runs in the node's network namespace
	c.l = &lab.Lab{Opts: o, Node: node, Log: t.Logf, Name: raceNameShown, Machine: lab.Machine(ctx, ""),
		Emulation: &lab.Emulation{Node: node, Table: "dgracelab", Service: clusterDNSIP, Every: o.Every}}
	res, err := lab.Run(ctx, c, c.l, e2e.root)
	if cerr := c.Close(context.WithoutCancel(ctx)); cerr != nil {
		t.Error(cerr)
	}
	if err != nil {
		t.Fatalf("race lab: %v", err)
	}
	for _, ch := range append(res.Checks, res.RowChecks...) {
		if ch.Mark() == "FAIL" {
			t.Error("FAIL: " + ch.Text)
		}
	}
	passed, failed, skipped := res.Counts()
	t.Logf("race lab: %d passed, %d failed, %d skipped; report in %s", passed, failed, skipped, o.Out)
}

func (c *clusterLab) Name() string { return "cluster" }

// unique is gailoop's -u prefix for the row of mode and client: lookup i
// asks for <i>.<prefix>.wildcard.dnsguard.test.
func (c *clusterLab) unique(mode, client string) string {
	return c.run + "-" + mode + "-" + client
}

func (c *clusterLab) Modes() []lab.Mode {
	var ms []lab.Mode
	for _, m := range clusterModes {
		m.Clients = []string{"glibc-gai", "glibc-gai-loop", "musl-gai", "musl-gai-fork"}
		if strings.HasSuffix(m.Name, "-control") || m.Name == "sidecar-nofallback" {
			m.Clients = controlClients
		}
		ms = append(ms, m.Mode)
	}
	return ms
}

func (c *clusterLab) Setup(ctx context.Context, l *lab.Lab) error {
	t := c.t
	for _, p := range []string{"nft", "conntrack", "iptables-save"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found (make deps): %w", p, err)
		}
	}
	// Our table must never outlive the lab (it drops DNS packets); lab.Run
	// removes it, this proves it.
	_ = l.Emulation.Remove(ctx)
	t.Cleanup(func() {
		if l.Emulation.Present(context.Background()) {
			t.Errorf("nft table %s still present after the race lab", l.Emulation.Table)
			_ = l.Emulation.Remove(context.Background())
		}
	})
	c.installedHere = c.ensureInstalled(ctx, t)
	createNamespace(ctx, t, nsRacePlain, nil)
	createNamespace(ctx, t, nsRaceGuard, map[string]string{enabledLabel: "true"})
	t.Cleanup(func() {
		for _, ns := range []string{nsRacePlain, nsRaceGuard} {
			_ = e2e.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	// The pods of a, b and c are created at once, first thing: a webhook
	// replica of an earlier scenario's values (c6 and the fault matrix
	// turn the node cache on and off) must be gone by then.
	if err := webhookSettled(ctx, nsRaceGuard, clusterDNSIP, 120*time.Second); err != nil {
		return err
	}
	l.Pass("the webhook settled: rolled out, no replica terminating, dnsconfig pods get %s first", clusterDNSIP)
	var err error
	if c.coreDNS, err = c.checkKubeDNS(ctx); err != nil {
		return err
	}
	return c.checkZone(ctx)
}

// Close puts the chart back as the lab found it.
func (c *clusterLab) Close(ctx context.Context) error {
	if c.installedHere {
		if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "2m"); err != nil {
			return fmt.Errorf("helm uninstall after the race lab: %w", err)
		}
		return nil
	}
	if c.restore != nil {
		c.restore()
	}
	return nil
}

// ensureInstalled installs the chart as users do unless it is installed;
// it reports whether it installed it.
func (c *clusterLab) ensureInstalled(ctx context.Context, t *testing.T) bool {
	t.Helper()
	if _, err := tool(ctx, "helm", "status", release, "-n", releaseNS); err == nil {
		waitReady(ctx, t, releaseNS, webhookSelector, 1, 120*time.Second)
		c.l.Pass("chart already installed (release %s in %s): reused", release, releaseNS)
		return false
	}
	publishRelease(ctx, t) // done by c0 unless this runs alone
	if _, err := tool(ctx, "helm", append(installArgs("install"), "--create-namespace")...); err != nil {
		t.Fatalf("helm install: %v%s", err, diagnose(ctx, releaseNS))
	}
	waitReady(ctx, t, releaseNS, webhookSelector, 1, 120*time.Second)
	c.l.Pass("chart installed with helm install (hooks, default values but the test image)")
	return true
}
