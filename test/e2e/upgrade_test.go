//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// prevRelease is the release before the tree's, as imagebuild previous (hack/imagebuild/previous.go) built
// it from its commit (E2E_PREV_RELEASE: its release.json, chart, images).
type prevRelease struct {
	dir     string
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Chart   string `json:"chart"`
	Images  []struct {
		Ref  string `json:"ref"`
		File string `json:"file"`
	} `json:"images"`
}

func loadPrevRelease(t *testing.T) *prevRelease {
	t.Helper()
	dir := os.Getenv("E2E_PREV_RELEASE")
	if dir == "" {
		t.Fatal("E2E_PREV_RELEASE is not set: hack/e2e.sh builds the previous release (imagebuild previous)")
	}
	b, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := &prevRelease{dir: dir}
	if err := json.Unmarshal(b, p); err != nil {
		t.Fatalf("%s/release.json: %v", dir, err)
	}
	return p
}

// image is the reference of the previous release's image NAME
// (dnsguard/NAME:VERSION, what its chart's defaults use).
func (p *prevRelease) image(name string) string {
	for _, im := range p.Images {
		if strings.Contains(im.Ref, "/"+name+":") {
			return im.Ref
		}
	}
	return ""
}

// u1Values are the values of u1's install, given again on upgrade as a
// user with a values file does: the node cache on, so its continuity
// across the upgrade can be measured.
func u1Values() []string {
	return []string{"--set", "tests.image=" + busyboxImage, "--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=" + clusterDNSIP}
}

// u1Rate is the pod creations per second during u1's windows (one every
// 200 ms, as c5's rotation).
const u1Rate = 5

// nodeCacheSelector selects the node cache DaemonSet's pods.
const nodeCacheSelector = "app.kubernetes.io/instance=" + release + ",dnsguard.io/component=node-cache"

// u1Upgrade: the previous recorded release (CHANGELOG.md), built from its
// commit, installed with its own chart and images and the node cache on,
// is upgraded to the release under test from the registry (oci://,
// --version) and then rolled back with `helm rollback`. Each step runs
// under load: a pod created every 200 ms in an opted-in namespace (none
// may fail or be admitted unpatched) and a pod whose only nameserver is
// the node cache (169.254.20.10) looking up a name of its own every 100 ms
// (none may fail; the slowest is reported). The certificate Secrets must
// be the same objects with the same CA after each step: an upgrade that
// re-issued the CA would leave the API server trusting a CA the webhook no
// longer serves until the caBundle catches up. The release is uninstalled
// at the end, as c8 leaves the cluster.
//
// Negative controls, run once each on this node (at 9ea5627+dirty, against
// the release tooling of helper H1's branch, 0.1.0 -> 0.2.0):
//   - the certificate Secrets deleted just before the upgrade (what an
//     upgrade that re-created them would do): all four checks failed after
//     the upgrade and again after the rollback, "Secret dnsguard-tls was
//     replaced (uid ...)" and "holds another ca.crt than before", both
//     Secrets;
//   - a 0.2.0 release whose node cache DaemonSet has no surge handover
//     (maxSurge 0, maxUnavailable 1): 1 of 164 lookups through the node
//     cache failed during the upgrade, max 2,010 ms (the positive run: 0 of
//     182, max 15 ms);
//   - the upgrade with --set shutdownDelaySeconds=0 (the released webhook
//     exits at once on SIGTERM): during the rollback 1 of 50 pods was
//     admitted unpatched (u1-rollback-0008).
//
// The release signed with another key than its cosign.pub: see c0.
func u1Upgrade(ctx context.Context, t *testing.T) {
	prev := loadPrevRelease(t)
	publishRelease(ctx, t)
	t.Cleanup(func() {
		bg := context.Background()
		_ = e2e.client.CoreV1().Pods(nsPlain).DeleteCollection(bg, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}, metav1.ListOptions{LabelSelector: "e2e=u1-dns"})
		for _, w := range []string{"upgrade", "rollback"} {
			deleteStream(bg, nsEnabled, "u1-"+w)
		}
		if _, err := tool(bg, "helm", "uninstall", release, "-n", releaseNS, "--ignore-not-found", "--wait", "--timeout", "3m"); err != nil {
			t.Errorf("helm uninstall after u1: %v", err)
		}
	})
	// From nothing: c8 (or an earlier run of scenarios) may have left
	// nothing or an installation; either way start clean.
	if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--ignore-not-found", "--wait", "--timeout", "3m"); err != nil {
		t.Fatal(err)
	}
	noCertSecrets(ctx, t, "before u1's install")
	// c0 made them; u1 may run alone.
	createNamespace(ctx, t, nsEnabled, map[string]string{enabledLabel: "true"})
	createNamespace(ctx, t, nsPlain, nil)
	for _, im := range prev.Images {
		if err := importImage(ctx, filepath.Join(prev.dir, im.File)); err != nil {
			t.Fatalf("import %s: %v", im.Ref, err)
		}
	}
	start := time.Now()
	if _, err := tool(ctx, "helm", append([]string{"install", release, filepath.Join(prev.dir, prev.Chart),
		"--namespace", releaseNS, "--create-namespace", "--wait", "--timeout", "4m"}, u1Values()...)...); err != nil {
		t.Fatalf("helm install %s (release %s, commit %.12s): %v%s", prev.Chart, prev.Version, prev.Commit, err, diagnose(ctx, releaseNS))
	}
	waitRollouts(ctx, t)
	waitPatched(ctx, t, 30*time.Second)
	t.Logf("release %s (commit %.12s) installed with the node cache in %.1fs", prev.Version, prev.Commit, time.Since(start).Seconds())
	checkPrevImages(ctx, t, prev)
	before := readCerts(ctx, t)

	u1Window(ctx, t, "upgrade", func() error {
		_, err := tool(ctx, "helm", append(installArgs("upgrade"), u1Values()...)...)
		return err
	})
	pods := waitReady(ctx, t, releaseNS, webhookSelector, 2, 60*time.Second)
	certPods := waitReady(ctx, t, releaseNS, certsSelector, 1, 60*time.Second)
	checkReleasedImages(t, append(pods, certPods...), "webhook")
	checkReleasedImages(t, waitReady(ctx, t, releaseNS, nodeCacheSelector, 1, 60*time.Second), "resolver")
	before.same(t, readCerts(ctx, t), "after the upgrade to "+rel.version)

	u1Window(ctx, t, "rollback", func() error {
		_, err := tool(ctx, "helm", "rollback", release, "1", "-n", releaseNS, "--wait", "--timeout", "4m")
		return err
	})
	checkPrevImages(ctx, t, prev)
	before.same(t, readCerts(ctx, t), "after helm rollback to "+prev.Version)
}

// u1Window runs action (helm upgrade or rollback) under u1's load and
// checks what was created and looked up meanwhile.
func u1Window(ctx context.Context, t *testing.T, name string, action func() error) {
	t.Helper()
	dns := startU1Lookups(ctx, t, "u1-dns-"+name)
	stop := make(chan struct{})
	s, wg := streamPods(ctx, nsEnabled, "u1-"+name, u1Rate, stop)
	start := time.Now()
	err := action()
	if err == nil {
		waitRollouts(ctx, t)
		waitGone(ctx, t)
	}
	// A few more creations once only the new pods are left.
	time.Sleep(3 * time.Second)
	end := time.Now()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("%s: %v%s", name, err, diagnose(ctx, releaseNS))
	}
	t.Logf("%s: %.1fs from the helm command until the old pods were gone", name, end.Sub(start).Seconds()-3)
	s.check(t)
	deleteStream(ctx, nsEnabled, "u1-"+name)
	dns.check(ctx, t, start, end)
}

// waitRollouts waits for the webhook, the certificate controller and the
// node cache to be rolled out.
func waitRollouts(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, r := range []string{"deployment/" + fullname, "deployment/" + fullname + "-certs", "daemonset/" + fullname + "-node-cache"} {
		if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, r, "--timeout=180s"); err != nil {
			t.Fatalf("%s: %v%s", r, err, diagnose(ctx, releaseNS))
		}
	}
}

// waitGone waits (bounded) until no pod of the release is terminating: a
// rollout is complete before the old replicas finish draining
// (shutdownDelaySeconds), and the window must include their exit.
func waitGone(ctx context.Context, t *testing.T) {
	t.Helper()
	err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		l, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("old pods of the release still terminating 120s after the rollout%s", diagnose(ctx, releaseNS))
	}
}

// waitPatched waits (bounded) for a patched server-side dry run in the
// opted-in namespace: kube-proxy programs a new Service's endpoints a
// moment after its replicas are Ready (see c0).
func waitPatched(ctx context.Context, t *testing.T, timeout time.Duration) {
	t.Helper()
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		p, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "u1-probe-"}, Spec: clientSpec(glibcImage),
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && patched(p), nil
	})
	if err != nil {
		t.Fatalf("no patched admission %s after the install%s", timeout, diagnose(ctx, releaseNS))
	}
}

// checkPrevImages fails unless the webhook, the certificate controller and
// the node cache run the previous release's images.
func checkPrevImages(ctx context.Context, t *testing.T, prev *prevRelease) {
	t.Helper()
	for _, c := range []struct {
		selector, image string
		n               int
	}{
		{webhookSelector, prev.image("webhook"), 2},
		{certsSelector, prev.image("webhook"), 1},
		{nodeCacheSelector, prev.image("resolver"), 1},
	} {
		for _, p := range waitReady(ctx, t, releaseNS, c.selector, c.n, 60*time.Second) {
			for _, ct := range p.Spec.Containers {
				if ct.Image != c.image {
					t.Errorf("pod %s container %s: image %q, want release %s's %q", p.Name, ct.Name, ct.Image, prev.Version, c.image)
				}
			}
		}
	}
}

// certs is what must survive an upgrade and a rollback: the certificate
// Secrets (the same objects) and their CA.
type certs struct {
	uids map[string]types.UID
	ca   map[string][]byte
}

func readCerts(ctx context.Context, t *testing.T) certs {
	t.Helper()
	c := certs{uids: map[string]types.UID{}, ca: map[string][]byte{}}
	for _, name := range []string{tlsSecret, fullname + "-ca"} {
		s, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("certificate Secret %s: %v", name, err)
		}
		if len(s.Data["ca.crt"]) == 0 {
			t.Fatalf("certificate Secret %s has no ca.crt", name)
		}
		c.uids[name], c.ca[name] = s.UID, s.Data["ca.crt"]
	}
	return c
}

// same fails unless after holds the same Secrets with the same CA.
func (c certs) same(t *testing.T, after certs, when string) {
	t.Helper()
	for name, uid := range c.uids {
		if after.uids[name] != uid {
			t.Errorf("%s: Secret %s was replaced (uid %s, was %s)", when, name, after.uids[name], uid)
		}
		if !bytes.Equal(after.ca[name], c.ca[name]) {
			t.Errorf("%s: Secret %s holds another ca.crt than before", when, name)
		}
	}
	if !t.Failed() {
		t.Logf("%s: both certificate Secrets kept (same objects, same CA)", when)
	}
}

// nodeCacheLookups is a pod whose only nameserver is the node cache,
// looking up a name of its own every 100 ms (gailoop -u: no cache has
// seen it, so every lookup crosses the node cache to the node's upstream),
// with one try of 2 s per query: a lookup the node cache drops fails
// instead of falling back.
type nodeCacheLookups struct{ pod string }

func startU1Lookups(ctx context.Context, t *testing.T, name string) *nodeCacheLookups {
	t.Helper()
	if err := startNodeCacheLookups(ctx, name, "", []string{"-u", name + "-" + time.Now().Format("150405"), fmZone + "."}); err != nil {
		t.Fatal(err)
	}
	return &nodeCacheLookups{pod: name}
}

// startNodeCacheLookups starts a pod (on node; anywhere the scheduler puts
// it when node is "") whose only nameserver is the node cache (one 2 s
// try: a lookup the node cache drops fails instead of falling back),
// running gailoop with args every 100 ms (bounded: 3,000 lookups or 300 s,
// far above any window), and waits for its first answer, so it runs before
// the window opens. nsPlain is not opted in, so the webhook leaves it as
// written. u1 and fault (e) use it.
func startNodeCacheLookups(ctx context.Context, name, node string, args []string) error {
	spec := clientSpec(glibcImage)
	spec.RestartPolicy = corev1.RestartPolicyNever
	if node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
		spec.Tolerations = []corev1.Toleration{tolerateSecondNode}
	}
	spec.DNSPolicy = corev1.DNSNone
	spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{nodeLocalIP},
		Options: []corev1.PodDNSConfigOption{{Name: "timeout", Value: ptr("2")}, {Name: "attempts", Value: ptr("1")}}}
	spec.Containers[0].Command = append([]string{"/gailoop", "-n", "3000", "-t", "300", "-i", "100"}, args...)
	_ = e2e.client.CoreV1().Pods(nsPlain).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
	err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := e2e.client.CoreV1().Pods(nsPlain).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e": "node-cache-lookups"}}, Spec: spec,
		}, metav1.CreateOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		l, err := logs(ctx, nsPlain, name, "app")
		return err == nil && strings.Contains(l, " ok "), nil
	})
	if err != nil {
		return fmt.Errorf("node cache lookup pod %s (node %q): no answer within 60s%s", name, node, diagnose(ctx, nsPlain))
	}
	return nil
}

// timedLookup is one lookup of a looping client pod, stamped with the
// time its log line was written (kubectl logs --timestamps).
type timedLookup struct {
	At time.Time
	lab.Lookup
}

// podLookups reads the lookups of a looping client pod (one per log line;
// gailoop's own messages are skipped) and deletes the pod.
func podLookups(ctx context.Context, t *testing.T, pod string) []timedLookup {
	t.Helper()
	log, err := logs(ctx, nsPlain, pod, "app")
	if err != nil {
		t.Fatal(err)
	}
	_ = e2e.client.CoreV1().Pods(nsPlain).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
	var out []timedLookup
	for _, line := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		if ls, _ := lab.ParseLookups(rest); len(ls) == 1 {
			out = append(out, timedLookup{at, ls[0]})
		}
	}
	return out
}

// check reads the pod's lookups and fails on any failed one, on a wrong
// answer, or when the loop did not span the window [start, end].
func (n *nodeCacheLookups) check(ctx context.Context, t *testing.T, start, end time.Time) {
	t.Helper()
	var first, last time.Time
	var total, failed, wrong, inWindow int
	var maxMS float64
	for _, l := range podLookups(ctx, t, n.pod) {
		at := l.At
		if first.IsZero() {
			first = at
		}
		last = at
		total++
		if !at.Before(start) && !at.After(end) {
			inWindow++
		}
		switch {
		case !l.OK:
			failed++
		case !slices.Contains(l.Addrs, "10.200.9.9"):
			wrong++
		}
		maxMS = max(maxMS, l.MS)
	}
	t.Logf("%s: %d lookups through the node cache (%d inside the %.1fs window), %d failed, %d wrong answers, max %.0f ms",
		n.pod, total, inWindow, end.Sub(start).Seconds(), failed, wrong, maxMS)
	if failed > 0 || wrong > 0 {
		t.Errorf("%s: %d of %d lookups through the node cache failed, %d answered wrongly", n.pod, failed, total, wrong)
	}
	// The loop must have run across the whole window: started before it
	// and still running at its end (bounded loop, 100 ms apart).
	if total == 0 || first.After(start) || last.Before(end.Add(-2*time.Second)) {
		t.Errorf("%s: the lookups (%s to %s) do not span the window (%s to %s)", n.pod,
			first.Format(time.TimeOnly), last.Format(time.TimeOnly), start.Format(time.TimeOnly), end.Format(time.TimeOnly))
	}
}
