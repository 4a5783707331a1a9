//go:build e2e

package e2e

// The resolvers' own counters around the race lab's rows: the sidecar's
// through kubectl port-forward, the node cache's from the node.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// lingerMS: gailoop waits this long after its last lookup in the sidecar
// rows, so the harness can read the sidecar's counters while the pod runs.
const lingerMS = 8000

// nodeCacheHealth is the node cache's health and metrics listener on the
// node (the chart's nodeCache.healthPort).
const nodeCacheHealth = "127.0.0.1:9254"

// checkSidecarCounters asserts what a row's sidecar says it did: every
// lookup forwarded (a healthy row), or at least tried (a control, whose
// upstream never answers).
func (c *clusterLab) checkSidecarCounters(m lab.Mode, j *podJob, control bool) {
	scope := fmt.Sprintf("sidecar of %s × %s (its own counters, read through kubectl port-forward before the pod ended)", m.Label, j.client)
	if j.countersErr != nil || j.counters == nil {
		c.l.Fail("%s: not read: %v", scope, j.countersErr)
		return
	}
	ch := lab.CheckForwarded(scope, *j.counters, len(j.lookups))
	c.l.Counters = append(c.l.Counters, ch.Text)
	if control {
		// Reported, not asserted: the control's assertion is its stalls.
		c.l.Log("%s", ch.Text)
		return
	}
	c.l.Check(ch.OK, "%s", ch.Text)
}

// checkNodeCache asserts what the node cache's own counters say it did over
// a configuration's rows, and that its upstream path saw no colliding
// packet (it never sends two queries from one socket at once).
//
// Negative control of the upstream path (issue 19): a node cache that sent
// A and AAAA of one name at once from one UDP socket to the node's
// upstream had 168 colliding packets there, 17 dropped, and failed here;
// the node-local rows stayed green (max 10 ms): musl's lookups were
// answered by the fallback while the node cache retried, and glibc's
// single-request-reopen never hands it a pair at once.
func (c *clusterLab) checkNodeCache(ctx context.Context, m lab.Mode, before lab.ResolverCounters, lookups int, control bool) {
	l := c.l
	scope := fmt.Sprintf("node cache over the %s rows (its own counters at %s/metrics, before and after)", m.Label, nodeCacheHealth)
	after, err := scrapeCounters(ctx, "http://"+nodeCacheHealth+"/metrics")
	if err != nil {
		l.Fail("%s: %v", scope, err)
	} else {
		ch := lab.CheckForwarded(scope, after.Sub(before), lookups)
		l.Counters = append(l.Counters, ch.Text)
		if control {
			// The control's node cache never sees the pods' queries.
			ok := after.Sub(before).Queries < float64(lookups)
			l.Check(ok, "%s: %s for %d lookups (want fewer queries than lookups: the control's rule kept the pods' queries from it)", scope, after.Sub(before), lookups)
		} else {
			l.Check(ch.OK, "%s", ch.Text)
		}
	}
	coll, drops, err := l.Emulation.HostCounters(ctx)
	if err != nil {
		l.Fail("%s: node cache's upstream path: %v", m.Label, err)
		return
	}
	text := fmt.Sprintf("%s: the node cache's own UDP queries upstream (output hook, to %s or %s port 53) had %d colliding packets, %d dropped by the emulation", m.Label, clusterDNSIP, cluster.UpstreamIP, coll, drops)
	l.Counters = append(l.Counters, text)
	l.Check(coll == 0, "%s (want 0: one socket per query)", text)
}

// scrapeCounters reads a resolver's counters from its /metrics page.
func scrapeCounters(ctx context.Context, url string) (lab.ResolverCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return lab.ResolverCounters{}, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return lab.ResolverCounters{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return lab.ResolverCounters{}, fmt.Errorf("GET %s: %s %v", url, resp.Status, err)
	}
	return lab.ParseResolverCounters(string(b))
}

// sidecarCounters reads the sidecar's counters from its loopback health
// listener inside pod ns/name, through kubectl port-forward as an operator
// would.
func sidecarCounters(ctx context.Context, ns string, p *corev1.Pod) (lab.ResolverCounters, error) {
	port := ""
	for _, ic := range p.Spec.InitContainers {
		for _, a := range ic.Args {
			if v, ok := strings.CutPrefix(a, "--health-listen=127.0.0.1:"); ok && ic.Name == sidecarName {
				port = v
			}
		}
	}
	if port == "" {
		return lab.ResolverCounters{}, fmt.Errorf("pod %s has no %s container with --health-listen=127.0.0.1:PORT", p.Name, sidecarName)
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(pctx, filepath.Join(e2e.bin, "kubectl"), "port-forward", "-n", ns, "pod/"+p.Name, "--address=127.0.0.1", "0:"+port)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return lab.ResolverCounters{}, err
	}
	if err := cmd.Start(); err != nil {
		return lab.ResolverCounters{}, fmt.Errorf("kubectl port-forward: %w", err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	// "Forwarding from 127.0.0.1:41234 -> 8053"
	sc := bufio.NewScanner(stdout)
	local := ""
	for local == "" && sc.Scan() {
		if m := forwardRE.FindStringSubmatch(sc.Text()); m != nil {
			local = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if local == "" {
		return lab.ResolverCounters{}, fmt.Errorf("kubectl port-forward to %s printed no local port", p.Name)
	}
	return scrapeCounters(pctx, "http://127.0.0.1:"+local+"/metrics")
}

var forwardRE = regexp.MustCompile(`127\.0\.0\.1:(\d+) ->`)

// scrapeWhenDone reads the sidecar's counters once the app has printed all
// its lookups: gailoop then lingers, so the sidecar still runs.
func (c *clusterLab) scrapeWhenDone(ctx context.Context, ns string, j *podJob, p *corev1.Pod) {
	b, err := e2e.client.CoreV1().Pods(ns).GetLogs(j.name, &corev1.PodLogOptions{Container: "app"}).Do(ctx).Raw()
	if err != nil {
		return
	}
	if ls, _ := lab.ParseLookups(string(b)); len(ls) < j.n {
		return
	}
	got, err := sidecarCounters(ctx, ns, p)
	if err != nil {
		j.countersErr = err
		return
	}
	j.counters = &got
}
