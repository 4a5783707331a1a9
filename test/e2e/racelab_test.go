//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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

const (
	nsRacePlain = "racelab-plain"
	nsRaceGuard = "racelab-guarded"
)

// raceZone is what the clients look up under: lookup i of a row asks for
// "<i>.<run>-<row>.wildcard.dnsguard.test." (gailoop -u; absolute, so no
// search path), which CoreDNS forwards to the node's upstream (dnsmasq on
// 10.200.0.1, test/cluster: A 10.200.9.9, no AAAA, TTL 0). Nobody asked for
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

// controlClients: one client per C library in the negative controls.
var controlClients = []string{"glibc-gai", "musl-gai"}

// clusterModes: the configurations in table order.
var clusterModes = []clusterMode{
	{lab.Mode{Name: "off", Label: "a Kubernetes default (ClusterFirst)", How: "a pod in a namespace without the dnsguard.io/enabled label: the webhook is not called, kubelet writes the ClusterFirst resolv.conf"}, nsRacePlain, ""},
	{lab.Mode{Name: "dnsconfig", Label: "b dnsconfig", How: "a pod annotated `dnsguard.io/mode: dnsconfig` in a labelled namespace: the webhook set dnsPolicy None and dnsConfig, kubelet rendered it"}, nsRaceGuard, "dnsconfig"},
	{lab.Mode{Name: "sidecar", Label: "c sidecar", How: "a pod annotated `dnsguard.io/mode: sidecar`: the webhook injected the resolver as a native sidecar (restartPolicy Always init container from the chart's resolver image) and 127.0.0.1 as first nameserver; kubelet started it before the app"}, nsRaceGuard, "sidecar"},
	{lab.Mode{Name: "sidecar-control", Label: "c✗ sidecar, upstream blackholed (negative control)", How: "the pod spec the webhook gives a `dnsguard.io/mode: sidecar` pod (server-side dry run in the labelled namespace), with the resolver's `--upstream` pointed at " + blackhole + ":53, created in the unlabelled namespace (the webhook does not touch it again); the lab's table drops every packet from the pod to " + blackhole + ", so the sidecar never gets an answer to forward"}, nsRacePlain, "sidecar"},
	{lab.Mode{Name: "nodelocal", Label: "d node-local", How: "after `helm upgrade --reuse-values --set nodeCache.enabled=true --set nodeCache.clusterDNS=10.96.0.10`: the chart's node cache DaemonSet on the node, pods annotated `dnsguard.io/mode: dnsconfig` get its link-local address first and the cluster DNS second"}, nsRaceGuard, "dnsconfig"},
	{lab.Mode{Name: "nodelocal-control", Label: "d✗ node-local, 169.254.20.10 blocked (negative control)", How: "as d, and the lab's table drops every packet from the pod to " + nodeLocalIP + ", so the node cache never sees the pod's queries"}, nsRaceGuard, "dnsconfig"},
}

// blackhole is the sidecar control's upstream: an address of TEST-NET-1
// (RFC 5737) that the lab's table drops, so it never answers.
const blackhole = "192.0.2.53"

// controlN is how many lookups a glibc negative control row does: each
// waits timeout:2 for the silent first nameserver, so 8 of them take 16 s.
// musl's lookups in a control row cost a millisecond unless the emulation
// dropped one of the fallback's pair, and its row must show at least one
// such stall: controlMuslN lookups make a row without a single collision
// (seen at 45 % a lookup on a bad run: 0.55^24 < 1e-6) out of the question
// at no cost in time.
const (
	controlN     = 8
	controlMuslN = 24
)

// lingerMS: gailoop waits this long after its last lookup in the sidecar
// rows, so the harness can read the sidecar's counters while the pod runs.
const lingerMS = 8000

// nodeCacheHealth is the node cache's health and metrics listener on the
// node (the chart's nodeCache.healthPort).
const nodeCacheHealth = "127.0.0.1:9254"

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
	scenario(t, "r1", title("r1"), func(t *testing.T) { raceLabRun(ctx, t) })
}

func raceLabRun(ctx context.Context, t *testing.T) {
	c := &clusterLab{t: t, podChecked: map[string]bool{}, run: strconv.FormatInt(time.Now().UnixNano()/1e6%(36*36*36*36*36), 36)}
	command := "make race-lab-cluster (or make e2e, after the scenarios)"
	if os.Getenv("RACE_DOCS") == "1" {
		command = "RACE_DOCS=1 make race-lab-cluster (make race-lab-docs)"
	}
	o, err := lab.FromEnv(c.Modes(), 200, filepath.Join(e2e.logs, "racelab"), command)
	if err != nil {
		t.Fatal(err)
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
		if strings.HasSuffix(m.Name, "-control") {
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
	var err error
	if c.coreDNS, err = c.checkKubeDNS(ctx); err != nil {
		return err
	}
	return c.checkZone(ctx)
}

// digAnswer is what dig printed for one query: the status and the answer
// records (owner, TTL, type, data).
type digAnswer struct {
	status  string
	answers [][]string
}

var digStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)

// dig asks server for name and qtype from the node, one try.
func dig(ctx context.Context, server, name, qtype string) (digAnswer, error) {
	out, err := exec.CommandContext(ctx, "dig", "+time=2", "+tries=1", "+noall", "+comments", "+answer", "@"+server, name, qtype).Output()
	if err != nil {
		return digAnswer{}, fmt.Errorf("dig @%s %s %s: %w", server, name, qtype, err)
	}
	var a digAnswer
	if m := digStatusRE.FindStringSubmatch(string(out)); m != nil {
		a.status = m[1]
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && !strings.HasPrefix(line, ";") && f[2] == "IN" {
			a.answers = append(a.answers, []string{f[0], f[1], f[3], f[4]})
		}
	}
	return a, nil
}

// checkZone asks CoreDNS, as the pods do, for a name of the lab's zone and
// records on the page what answers it: the rows' assertions rely on a
// forwarded answer for the A and an empty one for the AAAA.
func (c *clusterLab) checkZone(ctx context.Context) error {
	name := "0." + c.unique("setup", "dig") + "." + raceZone + "."
	a, err := dig(ctx, clusterDNSIP, name, "A")
	if err != nil {
		return err
	}
	aaaa, err := dig(ctx, clusterDNSIP, name, "AAAA")
	if err != nil {
		return err
	}
	ok := a.status == "NOERROR" && len(a.answers) == 1 && a.answers[0][2] == "A" && aaaa.status == "NOERROR" && len(aaaa.answers) == 1 && aaaa.answers[0][2] == "AAAA"
	c.l.Check(ok, "CoreDNS (%s) answers %s: A %s %v, AAAA %s %v (want one record each)", clusterDNSIP, name, a.status, a.answers, aaaa.status, aaaa.answers)
	if !ok {
		return fmt.Errorf("the lab's zone %s is not answered as the rows need", raceZone)
	}
	c.l.NameHow = fmt.Sprintf("Lookup *i* of a row asks for the absolute name `%s` (`gailoop -u`; the trailing dot skips the search path, so every lookup is exactly one A+AAAA pair), a name of its own per lookup, row and run. CoreDNS forwards it (`forward . /etc/resolv.conf`) to the node's upstream resolver, dnsmasq on %s in the node's network namespace (test/cluster), which answers `*.%s`; asked from the node before the rows, CoreDNS answered A with `%s` (TTL %s) and AAAA with `%s` (TTL %s). No one asked for the name before, so no cache on the way — the sidecar's, the node cache's, CoreDNS's — can answer it: every lookup crosses the node, and CoreDNS answers the A only after a round trip of its own to the upstream, so the AAAA reaches conntrack while the A is unanswered, as when the DNS pod runs on another node.",
		raceNameShown, cluster.UpstreamIP, raceZone, a.answers[0][3], a.answers[0][1], aaaa.answers[0][3], aaaa.answers[0][1])
	return nil
}

// Probe: the real race, no emulation. glibc and musl in one process each,
// the ClusterFirst configuration.
func (c *clusterLab) Probe(ctx context.Context, l *lab.Lab, n int) map[string][]lab.Lookup {
	got := map[string][]lab.Lookup{}
	var jobs []*podJob
	for _, libc := range []string{"glibc", "musl"} {
		jobs = append(jobs, &podJob{client: libc, image: clientImage(libc), n: n, args: lab.Client{Libc: libc}.GailoopArgs(n, raceZone, "-u", c.unique("probe", libc))})
	}
	c.runJobs(ctx, c.t, nsRacePlain, "", "rl-probe", jobs, false)
	for _, j := range jobs {
		if j.err != nil {
			l.Fail("real-race probe %s: %v", j.client, j.err)
		}
		got[j.client] = j.lookups
		deletePod(nsRacePlain, j.name)
	}
	return got
}

// RunMode measures one configuration: a fresh table, one pod per client
// side by side, one row each, and the resolvers' own counters around them.
func (c *clusterLab) RunMode(ctx context.Context, l *lab.Lab, m lab.Mode, clients []lab.Client) []lab.Row {
	t := c.t
	i := slices.IndexFunc(clusterModes, func(x clusterMode) bool { return x.Name == m.Name })
	ns, annotation := clusterModes[i].ns, clusterModes[i].annotation
	nodeLocal := strings.HasPrefix(m.Name, "nodelocal")
	if m.Name == "nodelocal" {
		restore, err := c.enableNodeCache(ctx, t)
		c.restore = restore
		if err != nil {
			// The other rows still make a report.
			l.Fail("node-local rows not run: %v", err)
			return nil
		}
		c.nodeCacheOK = true
	}
	if nodeLocal && !c.nodeCacheOK {
		l.Fail("%s rows not run: no node cache", m.Label)
		return nil
	}
	control := strings.HasSuffix(m.Name, "-control")
	var jobs []*podJob
	for _, cl := range clients {
		n := l.Opts.N
		if control && cl.Libc == "musl" {
			n = min(n, controlMuslN)
		} else if control {
			n = min(n, controlN)
		}
		j := &podJob{client: cl.Name, image: clientImage(cl.Libc), n: n}
		extra := []string{"-u", c.unique(m.Name, cl.Name)}
		if strings.HasPrefix(m.Name, "sidecar") {
			extra = append(extra, "-w", strconv.Itoa(lingerMS))
			j.scrape = true
		}
		j.args = cl.GailoopArgs(n, raceZone, extra...)
		switch m.Name {
		case "sidecar-control":
			j.block, j.prepare = blackhole, sidecarControl
		case "nodelocal-control":
			j.block = nodeLocalIP
		}
		jobs = append(jobs, j)
	}
	if err := l.Emulation.Reset(ctx); err != nil {
		l.Fail("%s rows not run: %v", m.Label, err)
		return nil
	}
	var before lab.ResolverCounters
	if nodeLocal {
		// The node cache is hostNetwork: its own queries upstream (UDP to
		// the cluster DNS or the node's resolver) get the emulation too.
		if err := l.Emulation.AddHost(ctx, []string{clusterDNSIP, cluster.UpstreamIP}); err != nil {
			l.Fail("%s rows not run: %v", m.Label, err)
			return nil
		}
		var err error
		if before, err = scrapeCounters(ctx, "http://"+nodeCacheHealth+"/metrics"); err != nil {
			l.Fail("%s: node cache counters before the rows: %v", m.Label, err)
		}
	}
	c.runJobs(ctx, t, ns, annotation, "rl-"+m.Name, jobs, true)
	l.RuleListing(ctx)
	var rows []lab.Row
	lookups := 0
	for _, j := range jobs {
		if j.err != nil {
			l.Fail("row %s × %s: %v", m.Label, j.client, j.err)
		}
		r := lab.Row{Mode: m.Name, Label: m.Label, Client: j.client, Lookups: j.lookups, Collisions: j.collisions, Drops: j.drops, Blocked: j.blocked, Asked: j.n}
		t.Logf("row %s × %s: %d lookups, collisions %d, drops %d, blocked %d", m.Label, j.client, len(j.lookups), j.collisions, j.drops, j.blocked)
		l.WriteRow(r, j.log)
		rows = append(rows, r)
		lookups += len(j.lookups)
		if j.created != nil {
			c.checkPod(t, m.Name, j.created)
		}
		if j.scrape {
			c.checkSidecarCounters(m, j, control)
		}
	}
	if nodeLocal {
		c.checkNodeCache(ctx, m, before, lookups, control)
	}
	if len(jobs) > 0 && jobs[0].created != nil {
		c.captureResolv(m.Name, ns, jobs[0].name)
	}
	for _, j := range jobs {
		deletePod(ns, j.name)
	}
	if !c.spreadChecked {
		// While the first mode's entries are fresh (UDP conntrack entries
		// live 30 s to 2 min).
		counts, err := lab.Spread(ctx, l.Node, clusterDNSIP, c.coreDNS)
		if err != nil {
			l.Fail("conntrack -L --orig-dst %s: %v", clusterDNSIP, err)
		} else {
			ok := len(c.coreDNS) == 2
			for _, ip := range c.coreDNS {
				ok = ok && counts[ip] > 0
			}
			l.Check(ok, "kube-proxy's DNAT spread the lookups' conntrack entries over both CoreDNS pods: %v", counts)
		}
		c.spreadChecked = true
	}
	return rows
}

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

// sidecarControl turns the client pod into the sidecar's negative control:
// the spec the webhook gives it in the labelled namespace (server-side dry
// run), with the resolver's upstream replaced by the blackhole, to be
// created in the unlabelled namespace.
func sidecarControl(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	dry, err := e2e.client.CoreV1().Pods(nsRaceGuard).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, fmt.Errorf("server-side dry run of %s in %s: %w", p.Name, nsRaceGuard, err)
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: p.Labels, Annotations: dry.Annotations}, Spec: dry.Spec}
	// Fields the API server set for the dry run's namespace.
	out.Spec.NodeName = ""
	replaced := 0
	for i, ic := range out.Spec.InitContainers {
		if ic.Name != sidecarName {
			continue
		}
		for k, a := range ic.Args {
			if strings.HasPrefix(a, "--upstream=") {
				out.Spec.InitContainers[i].Args[k] = "--upstream=" + blackhole + ":53"
				replaced++
			}
		}
	}
	if replaced != 1 {
		return nil, fmt.Errorf("the webhook's sidecar for %s has %d --upstream flags, want 1 to replace", p.Name, replaced)
	}
	return out, nil
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
	if _, err := tool(ctx, "helm", append(installArgs("install"), "--create-namespace")...); err != nil {
		t.Fatalf("helm install: %v%s", err, diagnose(ctx, releaseNS))
	}
	waitReady(ctx, t, releaseNS, webhookSelector, 1, 120*time.Second)
	c.l.Pass("chart installed with helm install (hooks, default values but the test image)")
	return true
}

// checkKubeDNS checks what the lab relies on: the kube-dns Service on
// 10.96.0.10 with two ready CoreDNS endpoints, and kube-proxy's DNAT rules
// to both. It returns the CoreDNS pod IPs.
func (c *clusterLab) checkKubeDNS(ctx context.Context) ([]string, error) {
	svc, err := e2e.client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube-system/kube-dns: %w", err)
	}
	if svc.Spec.ClusterIP != clusterDNSIP {
		return nil, fmt.Errorf("kube-dns ClusterIP %s, want %s", svc.Spec.ClusterIP, clusterDNSIP)
	}
	var ips []string
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		sl, err := e2e.client.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
		if err != nil {
			return false, nil
		}
		ips = ips[:0]
		for _, s := range sl.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && ep.Conditions.Ready != nil && *ep.Conditions.Ready && !slices.Contains(ips, ep.Addresses[0]) {
					ips = append(ips, ep.Addresses[0])
				}
			}
		}
		return len(ips) >= 2, nil
	})
	c.l.Check(err == nil && len(ips) == 2, "kube-dns: Service %s with %d ready CoreDNS endpoints %v (want 2)", clusterDNSIP, len(ips), ips)
	// kube-proxy (iptables mode) programs a DNAT per endpoint, commented
	// with the Service port's name.
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save -t nat: %w", err)
	}
	var missing []string
	for _, ip := range ips {
		if !hasDNAT(string(out), "kube-system/kube-dns:dns", ip+":53") {
			missing = append(missing, ip)
		}
	}
	c.l.Check(len(ips) > 0 && len(missing) == 0, "kube-proxy: iptables nat has a DNAT of kube-dns:dns (udp) to every CoreDNS pod %v (missing %v)", ips, missing)
	dep, err := e2e.client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	image, user, replicas := "?", "?", "?"
	if err == nil && len(dep.Spec.Template.Spec.Containers) > 0 {
		ct := dep.Spec.Template.Spec.Containers[0]
		image = ct.Image
		if ct.SecurityContext != nil && ct.SecurityContext.RunAsUser != nil {
			user = strconv.FormatInt(*ct.SecurityContext.RunAsUser, 10)
		}
		if dep.Spec.Replicas != nil {
			replicas = strconv.Itoa(int(*dep.Spec.Replicas))
		}
	}
	node := "?"
	if nl, err := e2e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil && len(nl.Items) == 1 {
		ni := nl.Items[0].Status.NodeInfo
		node = fmt.Sprintf("kubelet %s, %s, kernel %s", ni.KubeletVersion, ni.ContainerRuntimeVersion, ni.KernelVersion)
	}
	c.l.Real = append(c.l.Real,
		fmt.Sprintf("**kubelet and the container runtime** (%s; runc; CNI bridge `cni0`): created every client pod and wrote its `/etc/resolv.conf` (below, read from the pod sandbox)", node),
		fmt.Sprintf("**kube-proxy** in iptables mode: its `KUBE-SEP` DNAT rules for `kube-system/kube-dns:dns` (found in `iptables-save -t nat`) sent each lookup's conntrack entry to one of the CoreDNS pods %s", strings.Join(ips, " and ")),
		fmt.Sprintf("**CoreDNS**, upstream's code but not upstream's image: built here from source (hack/build-tools.sh, `hack/tools/coredns`) and packaged by hack/images.sh as a one-layer image of the static binary, imported under the name `%s` that the standard manifest uses; Deployment `kube-system/coredns`, %s replicas, runAsUser %s, the standard Corefile (test/cluster/addons.go), forwarding the lab's names to the node's dnsmasq", image, replicas, user),
		"**dnsguard as users install it** (`helm install` with hooks): the webhook behind its Service mutated the b, c and d pods; the resolver sidecar was injected by the webhook and run by kubelet as a native sidecar; the node cache is the chart's DaemonSet",
		"**glibc and musl**: `getaddrinfo` of the distribution's glibc and of musl (static) in the e2e client images, inside the pods' own network namespaces")
	return ips, nil
}

// hasDNAT reports whether iptables-save output has kube-proxy's UDP DNAT
// of the Service port comment (namespace/name:port) to dest.
func hasDNAT(iptablesSave, comment, dest string) bool {
	for _, line := range strings.Split(iptablesSave, "\n") {
		if strings.HasPrefix(line, "-A KUBE-SEP-") && strings.Contains(line, " -p udp ") &&
			strings.Contains(line, `--comment "`+comment+`"`) && strings.HasSuffix(line, "-j DNAT --to-destination "+dest) {
			return true
		}
	}
	return false
}

// captureResolv copies the resolv.conf kubelet had containerd write for pod
// name from its sandbox directory (<containerd root>/<cri plugin>/sandboxes/
// <id>/{hostname,resolv.conf}; the sandbox of a finished pod stays until the
// pod is deleted) and checks it against the mode.
func (c *clusterLab) captureResolv(mode, ns, name string) {
	runDir := os.Getenv("CLUSTER_RUN_DIR")
	var resolv []byte
	for _, pat := range []string{"containerd/*/*/sandboxes/*/hostname", "containerd/*/sandboxes/*/hostname", "containerd/*/*/*/sandboxes/*/hostname"} {
		files, _ := filepath.Glob(filepath.Join(runDir, pat))
		for _, f := range files {
			if h, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(h)) == name {
				if b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "resolv.conf")); err == nil {
					resolv = b
				}
			}
		}
	}
	if resolv == nil {
		c.l.Fail("resolv.conf of %s (%s): no sandbox with hostname %s under %s/containerd", mode, name, name, runDir)
		return
	}
	c.l.Resolv[mode] = string(resolv)
	var nameservers, options []string
	search := ""
	for _, line := range strings.Split(string(resolv), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "nameserver":
			nameservers = append(nameservers, f[1])
		case len(f) >= 2 && f[0] == "search":
			search = strings.Join(f[1:], " ")
		case len(f) >= 2 && f[0] == "options":
			options = append(options, f[1:]...)
		}
	}
	if mode == "sidecar-control" {
		ns = nsRaceGuard // the webhook rendered it for the labelled namespace
	}
	wantSearch := ns + ".svc.cluster.local svc.cluster.local cluster.local"
	var ok bool
	var want string
	switch mode {
	case "off":
		ok, want = slices.Equal(nameservers, []string{clusterDNSIP}) && slices.Contains(options, "ndots:5") && !slices.Contains(options, "single-request-reopen"),
			"ClusterFirst: nameserver "+clusterDNSIP+", ndots:5, no single-request-reopen"
	case "dnsconfig":
		ok, want = slices.Equal(nameservers, []string{clusterDNSIP}) && slices.Contains(options, "single-request-reopen") && slices.Contains(options, "timeout:2") && slices.Contains(options, "attempts:3"),
			"nameserver "+clusterDNSIP+", timeout:2 attempts:3 single-request-reopen"
	case "sidecar", "sidecar-control":
		ok, want = len(nameservers) > 0 && nameservers[0] == "127.0.0.1", "127.0.0.1 first"
	case "nodelocal", "nodelocal-control":
		ok, want = slices.Equal(nameservers, []string{nodeLocalIP, clusterDNSIP}), "node cache "+nodeLocalIP+" first, "+clusterDNSIP+" second"
	}
	ok = ok && strings.HasPrefix(search, wantSearch)
	c.l.Check(ok, "kubelet's resolv.conf for %s: %s, search %s… (got nameservers %v, search %q, options %v)", mode, want, wantSearch, nameservers, search, options)
}

// enableNodeCache: helm upgrade with the node cache, wait until the webhook
// hands pods its address. The returned func puts the previous value back;
// it is valid (and must be called) also when err is not nil.
func (c *clusterLab) enableNodeCache(ctx context.Context, t *testing.T) (restore func(), err error) {
	t.Helper()
	prev := "false"
	if out, err := tool(ctx, "helm", "get", "values", release, "-n", releaseNS, "-o", "json"); err == nil {
		var v struct {
			NodeCache struct {
				Enabled *bool `json:"enabled"`
			} `json:"nodeCache"`
		}
		if json.Unmarshal([]byte(out), &v) == nil && v.NodeCache.Enabled != nil && *v.NodeCache.Enabled {
			prev = "true"
		}
	}
	restore = func() {
		if prev == "true" {
			return
		}
		if _, err := tool(context.Background(), "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "nodeCache.enabled=false", "--timeout", "2m")...); err != nil {
			t.Errorf("helm upgrade --set nodeCache.enabled=false after the race lab: %v", err)
		}
	}
	// A DaemonSet that is not Ready in 2 minutes on one idle node will not be.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values",
		"--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS="+clusterDNSIP, "--timeout", "2m")...); err != nil {
		return restore, fmt.Errorf("helm upgrade --set nodeCache.enabled=true did not finish in 2m; node cache: %s\n%v%s", nodeCacheLastLog(ctx), err, diagnose(ctx, releaseNS))
	}
	for _, r := range []string{"daemonset/" + fullname + "-node-cache", "deployment/" + fullname} {
		if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, r, "--timeout=120s"); err != nil {
			return restore, fmt.Errorf("rollout of %s: %v%s", r, err, diagnose(ctx, releaseNS))
		}
	}
	// No row pod may be admitted by an old replica still draining.
	if _, got, err := firstNameserverAfterRollout(ctx, nsRaceGuard, clientPod("rl-dryrun", glibcImage, "dnsconfig", "-n", "1", raceZone), nodeLocalIP, 60*time.Second); err != nil {
		return restore, fmt.Errorf("the webhook does not give %s as first nameserver 60s after the upgrade (last: %v): %v", nodeLocalIP, got, err)
	}
	c.l.Pass("helm upgrade --set nodeCache.enabled=true: DaemonSet rolled out, the webhook gives pods %s first", nodeLocalIP)
	return restore, nil
}

// nodeCacheLastLog is the last log line of a node cache pod: why it is not
// Ready, in its own words.
func nodeCacheLastLog(ctx context.Context) string {
	pods, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Name, fullname+"-node-cache-") {
			continue
		}
		b, err := e2e.client.CoreV1().Pods(releaseNS).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptr[int64](1)}).Do(ctx).Raw()
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(string(b))
	}
	return "no node cache pod"
}

// checkPod: the stored pod carries what the mode promises.
func (c *clusterLab) checkPod(t *testing.T, mode string, p *corev1.Pod) {
	t.Helper()
	ns := []string(nil)
	if p.Spec.DNSConfig != nil {
		ns = p.Spec.DNSConfig.Nameservers
	}
	sidecar := len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == sidecarName
	var ok bool
	var want string
	switch mode {
	case "off":
		ok, want = !patched(p) && p.Spec.DNSPolicy == corev1.DNSClusterFirst, "untouched, dnsPolicy ClusterFirst"
	case "dnsconfig":
		ok, want = p.Spec.DNSPolicy == corev1.DNSNone && slices.Equal(ns, []string{clusterDNSIP}) && !sidecar, "dnsPolicy None, nameservers ["+clusterDNSIP+"]"
	case "sidecar":
		ok, want = sidecar && len(ns) > 0 && ns[0] == "127.0.0.1", "the "+sidecarName+" native sidecar first, nameserver 127.0.0.1 first"
	case "sidecar-control":
		ok, want = sidecar && len(ns) > 0 && ns[0] == "127.0.0.1" && slices.Contains(p.Spec.InitContainers[0].Args, "--upstream="+blackhole+":53"),
			"the "+sidecarName+" native sidecar first with --upstream="+blackhole+":53, nameserver 127.0.0.1 first"
	case "nodelocal", "nodelocal-control":
		ok, want = slices.Equal(ns, []string{nodeLocalIP, clusterDNSIP}), "nameservers ["+nodeLocalIP+" "+clusterDNSIP+"]"
	}
	if ok && c.podChecked[mode] {
		return // one PASS line per mode; every failure is listed
	}
	c.podChecked[mode] = true
	c.l.Check(ok, "pod spec %s (%s): %s; got dnsPolicy %s, nameservers %v, sidecar %v", mode, p.Name, want, p.Spec.DNSPolicy, ns, sidecar)
}

// clientPod runs gailoop once in a pod of its own (restartPolicy Never).
func clientPod(name, image string, annotation string, gailoop ...string) *corev1.Pod {
	spec := clientSpec(image)
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.TerminationGracePeriodSeconds = ptr[int64](2)
	spec.Containers[0].Command = append([]string{"/gailoop"}, gailoop...)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if annotation != "" {
		p.Annotations = map[string]string{modeAnnotation: annotation}
	}
	return p
}

func deletePod(ns, name string) {
	_ = e2e.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
}

// holdMS is how long a client pod's init container waits before the app
// starts: the harness adds the pod's drop rule once the pod has an IP, which
// kubelet reports as the sandbox comes up, well before that.
const holdMS = 4000

// podJob is one client pod of a row (or of the probe) and what it measured.
type podJob struct {
	client, image string
	args          []string // gailoop's
	n             int
	name          string // the pod's
	created       *corev1.Pod
	ruled         bool
	done          bool
	phase         corev1.PodPhase
	log           string
	lookups       []lab.Lookup
	collisions    int
	drops         int
	err           error
	// block: a negative control's address the pod's packets to are dropped.
	block   string
	blocked int
	// prepare turns the client pod into the one to create (nil: as it is).
	prepare func(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error)
	// scrape: read the sidecar's counters once the app printed its n
	// lookups (it lingers after them).
	scrape      bool
	counters    *lab.ResolverCounters
	countersErr error
	lastLogRead time.Time
}

// runJobs creates the pods of jobs in namespace ns side by side, adds each
// pod's drop rule (emulate) as soon as it has an IP, and waits (bounded)
// until all have finished; then it reads their logs and counters.
func (c *clusterLab) runJobs(ctx context.Context, t *testing.T, ns, annotation, prefix string, jobs []*podJob, emulate bool) {
	t.Helper()
	maxN := 0
	for _, j := range jobs {
		maxN = max(maxN, j.n)
		p := clientPod(prefix+"-"+j.client, j.image, annotation, j.args...)
		if emulate {
			hold := p.Spec.Containers[0]
			hold.Name = "hold"
			// A numeric address: getaddrinfo answers it without any query.
			hold.Command = []string{"/gailoop", "-n", "2", "-i", strconv.Itoa(holdMS), "-t", "30", "127.0.0.1"}
			p.Spec.InitContainers = []corev1.Container{hold}
		}
		p.Labels = map[string]string{"dnsguard-racelab": prefix}
		j.name = p.Name
		if j.prepare != nil {
			var err error
			if p, err = j.prepare(ctx, p); err != nil {
				j.err, j.done = err, true
				continue
			}
		}
		created, err := e2e.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			j.err = fmt.Errorf("create pod %s/%s: %w", ns, p.Name, err)
			j.done = true
			continue
		}
		j.created = created
	}
	// gailoop stops itself after RowLimit; the pod gets a minute more for
	// start and stop.
	limit := time.Duration(lab.RowLimit(maxN)+60) * time.Second
	err := poll(ctx, limit, func(ctx context.Context) (bool, error) {
		all := true
		for i, j := range jobs {
			if j.done {
				continue
			}
			cur, err := e2e.client.CoreV1().Pods(ns).Get(ctx, j.name, metav1.GetOptions{})
			if err != nil {
				all = false
				continue
			}
			if emulate && !j.ruled && cur.Status.PodIP != "" {
				if err := c.l.Emulation.AddClient(ctx, i, cur.Status.PodIP); err != nil {
					j.err, j.done = err, true
					continue
				}
				if j.block != "" {
					if err := c.l.Emulation.Block(ctx, i, cur.Status.PodIP, j.block); err != nil {
						j.err, j.done = err, true
						continue
					}
				}
				j.ruled = true
				// The app must not have started before its rule existed.
				if after, err := e2e.client.CoreV1().Pods(ns).Get(ctx, j.name, metav1.GetOptions{}); err == nil {
					for _, cs := range after.Status.ContainerStatuses {
						if cs.Name == "app" && (cs.State.Running != nil || cs.State.Terminated != nil) {
							j.err = fmt.Errorf("pod %s: the app started before its drop rule was added (hold %d ms too short?)", j.name, holdMS)
						}
					}
				}
			}
			j.phase = cur.Status.Phase
			if j.scrape && j.counters == nil && j.phase == corev1.PodRunning && time.Since(j.lastLogRead) > time.Second {
				j.lastLogRead = time.Now()
				c.scrapeWhenDone(ctx, ns, j, cur)
			}
			if j.phase == corev1.PodSucceeded || j.phase == corev1.PodFailed {
				j.done = true
				if emulate && !j.ruled && j.err == nil {
					j.err = fmt.Errorf("pod %s finished before it had an IP in its status", j.name)
				}
				continue
			}
			all = false
		}
		return all, nil
	})
	for i, j := range jobs {
		if j.created == nil {
			continue
		}
		if !j.done && j.err == nil {
			j.err = fmt.Errorf("pod %s/%s not finished after %s (phase %s): %v%s", ns, j.name, limit, j.phase, err, diagnose(ctx, ns))
		}
		b, lerr := e2e.client.CoreV1().Pods(ns).GetLogs(j.name, &corev1.PodLogOptions{Container: "app"}).Do(ctx).Raw()
		if lerr != nil && j.err == nil {
			j.err = fmt.Errorf("logs of %s/%s: %w", ns, j.name, lerr)
		}
		j.log = string(b)
		j.lookups, _ = lab.ParseLookups(j.log)
		if j.phase == corev1.PodFailed && j.err == nil {
			j.err = fmt.Errorf("pod %s/%s failed%s\n%s", ns, j.name, diagnose(ctx, ns), b)
		}
		if emulate && j.ruled {
			if j.collisions, j.drops, err = c.l.Emulation.Counters(ctx, i); err != nil && j.err == nil {
				j.err = err
			}
			if j.block != "" {
				if j.blocked, err = c.l.Emulation.Blocked(ctx, i); err != nil && j.err == nil {
					j.err = err
				}
			}
		}
		if j.scrape && j.counters == nil && j.countersErr == nil {
			j.countersErr = fmt.Errorf("pod %s ended before its app had printed %d lookups and the harness read the counters (linger %d ms)", j.name, j.n, lingerMS)
		}
	}
}

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
