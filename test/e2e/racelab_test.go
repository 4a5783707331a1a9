//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The race lab on the real node (issue 11, item 5): the emulated conntrack
// insert_failed of test/racelab, applied in the node's network namespace to
// what kube-proxy DNATs to the two CoreDNS pods, measured with glibc and
// musl client pods in each dnsguard configuration. The rows go through the
// netns lab's report tool (test/racelab/report, same table, plot and
// assertions) into docs/race-lab-cluster.{md,svg}.
//
// Knobs (environment): RACE_N lookups per row (100), RACE_EVERY drop every
// RACE_EVERY-th colliding packet (10), RACE_PROBE_N lookups per libc of the
// no-emulation probe (200), RACE_MODES subset of "off dnsconfig sidecar
// nodelocal" and RACE_CLIENTS subset of "glibc-gai glibc-gai-loop musl-gai
// musl-gai-fork" (debugging; the report's assertions want them all),
// RACELAB_DOCS=0 skips rewriting the docs.

const (
	raceTable   = "dgracelab" // nft table of ours in the node namespace
	raceName    = "backend"   // the Service the clients look up by short name
	nsRacePlain = "racelab-plain"
	nsRaceGuard = "racelab-guarded"
)

// raceModes: the configurations in table order. The labels are the report's
// (test/racelab/report/cluster.go).
var raceModes = []struct {
	mode, label, ns, annotation string
}{
	{"off", "a Kubernetes default (ClusterFirst)", nsRacePlain, ""},
	{"dnsconfig", "b dnsconfig", nsRaceGuard, "dnsconfig"},
	{"sidecar", "c sidecar", nsRaceGuard, "sidecar"},
	{"nodelocal", "d node-local", nsRaceGuard, "dnsconfig"},
}

// raceClients: C library and gailoop flags of each client.
var raceClients = []struct {
	name, libc string
	fork       bool
}{
	{"glibc-gai", "glibc", true},
	{"glibc-gai-loop", "glibc", false},
	{"musl-gai", "musl", false},
	{"musl-gai-fork", "musl", true},
}

// clientImage is the e2e client image of libc (the names are set in
// loadEnv, after package initialisation).
func clientImage(libc string) string {
	if libc == "musl" {
		return muslImage
	}
	return glibcImage
}

type raceLab struct {
	n, every, probeN int
	modes, clients   []string
	work             string
	rows             *os.File
	checks           []string
	real             []string
	realRace         []string
	realRaceFired    string
	ruleListing      string
	podChecked       map[string]bool
	spreadChecked    bool
	start            time.Time
}

func envInt(t *testing.T, name string, def, lo, hi int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Fatalf("%s=%q: want an integer in [%d, %d]", name, v, lo, hi)
	}
	return n
}

func envList(t *testing.T, name string, all []string) []string {
	t.Helper()
	v := strings.Fields(os.Getenv(name))
	if len(v) == 0 {
		return all
	}
	for _, x := range v {
		if !slices.Contains(all, x) {
			t.Fatalf("%s: unknown %q, want a subset of %q", name, x, strings.Join(all, " "))
		}
	}
	return v
}

func (l *raceLab) pass(format string, args ...any) {
	l.checks = append(l.checks, "PASS: "+fmt.Sprintf(format, args...))
}

func (l *raceLab) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	// The report lists one line per check, without this machine's paths;
	// the test log keeps everything.
	line, _, _ := strings.Cut(msg, "\n")
	line = strings.ReplaceAll(line, e2e.root+"/", "")
	if len(line) > 400 {
		line = line[:400] + "…"
	}
	l.checks = append(l.checks, "FAIL: "+line)
	t.Error(msg)
}

func (l *raceLab) check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		l.pass(format, args...)
	} else {
		l.fail(t, format, args...)
	}
}

// TestRaceLab runs the lab as scenario r1. It installs the chart if it is not
// installed (and uninstalls it again), so it runs alone (make
// race-lab-cluster) or after TestE2E (make e2e).
func TestRaceLab(t *testing.T) {
	ctx := t.Context()
	scenario(t, "r1", title("r1"), func(t *testing.T) { raceLabRun(ctx, t) })
}

func raceLabRun(ctx context.Context, t *testing.T) {
	var modeNames, clientNames []string
	for _, m := range raceModes {
		modeNames = append(modeNames, m.mode)
	}
	for _, c := range raceClients {
		clientNames = append(clientNames, c.name)
	}
	l := &raceLab{
		n:          envInt(t, "RACE_N", 100, 1, 1000),
		every:      envInt(t, "RACE_EVERY", 10, 1, 1000),
		probeN:     envInt(t, "RACE_PROBE_N", 200, 0, 2000),
		modes:      envList(t, "RACE_MODES", modeNames),
		clients:    envList(t, "RACE_CLIENTS", clientNames),
		work:       filepath.Join(e2e.logs, "racelab"),
		podChecked: map[string]bool{},
		start:      time.Now(),
	}
	report := filepath.Join(e2e.bin, "racelab-report")
	for _, p := range []string{"nft", "conntrack", "iptables-save"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s not found (make deps): %v", p, err)
		}
	}
	if _, err := os.Stat(report); err != nil {
		t.Fatalf("%s missing (hack/e2e.sh builds it from test/racelab/report): %v", report, err)
	}
	if err := os.RemoveAll(l.work); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.work, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if l.rows, err = os.Create(filepath.Join(l.work, "rows.tsv")); err != nil {
		t.Fatal(err)
	}
	defer l.rows.Close()

	// Our table must never outlive the lab (it drops DNS packets).
	_ = nft(ctx, "delete", "table", "ip", raceTable)
	t.Cleanup(func() {
		if err := nft(context.Background(), "delete", "table", "ip", raceTable); err == nil {
			t.Logf("removed nft table %s", raceTable)
		}
		if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), raceTable) {
			t.Errorf("nft table %s still present after cleanup", raceTable)
		}
	})

	installedHere := l.ensureInstalled(ctx, t)
	createNamespace(ctx, t, nsRacePlain, nil)
	createNamespace(ctx, t, nsRaceGuard, map[string]string{enabledLabel: "true"})
	t.Cleanup(func() {
		for _, ns := range []string{nsRacePlain, nsRaceGuard} {
			_ = e2e.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	for _, ns := range []string{nsRacePlain, nsRaceGuard} {
		// A ClusterIP Service without selector: CoreDNS answers its A
		// record whether or not it has endpoints.
		_, err := e2e.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: raceName},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intOrPort(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create Service %s/%s: %v", ns, raceName, err)
		}
	}
	coreDNS := l.checkKubeDNS(ctx, t)

	l.probe(ctx, t)

	kernelBefore := conntrackStats(t)
	for _, m := range raceModes {
		if !slices.Contains(l.modes, m.mode) {
			continue
		}
		if m.mode != "nodelocal" {
			l.runMode(ctx, t, m.mode, m.label, m.ns, m.annotation)
		} else {
			restore, err := l.enableNodeCache(ctx, t)
			if err != nil {
				// The rows of a to c still make a report.
				l.fail(t, "node-local rows not run: %v", err)
			} else {
				l.runMode(ctx, t, m.mode, m.label, m.ns, m.annotation)
			}
			if !installedHere { // else uninstalled below
				restore()
			}
		}
		if !l.spreadChecked {
			// While the first mode's entries are fresh (UDP conntrack
			// entries live 30 s to 2 min).
			l.checkSpread(t, coreDNS)
			l.spreadChecked = true
		}
	}
	if err := nft(ctx, "delete", "table", "ip", raceTable); err != nil {
		t.Errorf("delete nft table %s: %v", raceTable, err)
	}
	kernelAfter := conntrackStats(t)
	l.realRace = append(l.realRace, fmt.Sprintf("during the emulated rows the kernel's own insert_failed went %d → %d, drop %d → %d",
		kernelBefore["insert_failed"], kernelAfter["insert_failed"], kernelBefore["drop"], kernelAfter["drop"]))
	if kernelBefore["insert_failed"] == kernelAfter["insert_failed"] {
		l.realRace[len(l.realRace)-1] += " (every drop in the table is the emulation's)"
	}
	if err := l.rows.Sync(); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.Log("race lab: a setup step failed; the report below still shows what was measured")
	}
	l.report(ctx, t, report)
	if installedHere {
		if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "2m"); err != nil {
			t.Errorf("helm uninstall after the race lab: %v", err)
		}
	}
}

// ensureInstalled installs the chart as users do unless it is installed;
// it reports whether it installed it.
func (l *raceLab) ensureInstalled(ctx context.Context, t *testing.T) bool {
	t.Helper()
	if _, err := tool(ctx, "helm", "status", release, "-n", releaseNS); err == nil {
		waitReady(ctx, t, releaseNS, webhookSelector, 1, 120*time.Second)
		l.pass("chart already installed (release %s in %s): reused", release, releaseNS)
		return false
	}
	if _, err := tool(ctx, "helm", append(installArgs("install"), "--create-namespace")...); err != nil {
		t.Fatalf("helm install: %v%s", err, diagnose(ctx, releaseNS))
	}
	waitReady(ctx, t, releaseNS, webhookSelector, 1, 120*time.Second)
	l.pass("chart installed with helm install (hooks, default values but the test image)")
	return true
}

// checkKubeDNS checks what the lab relies on: the kube-dns Service on
// 10.96.0.10 with two ready CoreDNS endpoints, and kube-proxy's DNAT rules
// to both. It returns the CoreDNS pod IPs.
func (l *raceLab) checkKubeDNS(ctx context.Context, t *testing.T) []string {
	t.Helper()
	svc, err := e2e.client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-system/kube-dns: %v", err)
	}
	if svc.Spec.ClusterIP != clusterDNSIP {
		t.Fatalf("kube-dns ClusterIP %s, want %s", svc.Spec.ClusterIP, clusterDNSIP)
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
	l.check(t, err == nil && len(ips) == 2, "kube-dns: Service %s with %d ready CoreDNS endpoints %v (want 2)", clusterDNSIP, len(ips), ips)
	// kube-proxy (iptables mode) programs a DNAT per endpoint, commented
	// with the Service port's name.
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save -t nat: %v", err)
	}
	var missing []string
	for _, ip := range ips {
		if !hasDNAT(string(out), "kube-system/kube-dns:dns", ip+":53") {
			missing = append(missing, ip)
		}
	}
	l.check(t, len(ips) > 0 && len(missing) == 0, "kube-proxy: iptables nat has a DNAT of kube-dns:dns (udp) to every CoreDNS pod %v (missing %v)", ips, missing)
	dep, err := e2e.client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	image := "?"
	if err == nil && len(dep.Spec.Template.Spec.Containers) > 0 {
		image = dep.Spec.Template.Spec.Containers[0].Image
	}
	node := "?"
	if nl, err := e2e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil && len(nl.Items) == 1 {
		ni := nl.Items[0].Status.NodeInfo
		node = fmt.Sprintf("kubelet %s, %s, kernel %s", ni.KubeletVersion, ni.ContainerRuntimeVersion, ni.KernelVersion)
	}
	l.real = append(l.real,
		fmt.Sprintf("**kubelet and the container runtime** (%s; runc; CNI bridge `cni0`): created every client pod and wrote its `/etc/resolv.conf` (below, read from the pod sandbox)", node),
		fmt.Sprintf("**kube-proxy** in iptables mode: its `KUBE-SEP` DNAT rules for `kube-system/kube-dns:dns` (found in `iptables-save -t nat`) sent each lookup's conntrack entry to one of the CoreDNS pods %s", strings.Join(ips, " and ")),
		fmt.Sprintf("**CoreDNS** (`%s`, Deployment `kube-system/coredns`, 2 replicas, standard Corefile) answered every query that was not dropped", image),
		"**dnsguard as users install it** (`helm install` with hooks): the webhook behind its Service mutated the b, c and d pods; the resolver sidecar was injected by the webhook and run by kubelet as a native sidecar; the node cache is the chart's DaemonSet",
		"**glibc and musl**: `getaddrinfo` of the distribution's glibc and of musl (static) in the e2e client images, inside the pods' own network namespaces")
	return ips
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

// nft runs nft with args in the node namespace (the test binary's own).
func nft(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "nft", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// The emulated insert_failed (see the report): one chain after conntrack
// (-200) and before kube-proxy's DNAT (-100), and one rule per client pod,
// added as soon as the pod has its IP (the pod's app waits in an init
// container meanwhile), each with its own counters and numgen sequence, so
// the rows of a configuration run side by side and count only their own
// packets. The rule matches the conntrack entry's original destination, the
// kube-dns ClusterIP, so it sees exactly the flows kube-proxy DNATs to
// CoreDNS.
func raceTableDef() string {
	return fmt.Sprintf(`table ip %s {
  chain prerouting {
    type filter hook prerouting priority -150; policy accept;
  }
}
`, raceTable)
}

// podRule is the drop rule for the client pod with address ip; its counters
// are collisions<i> and drops<i>.
func (l *raceLab) podRule(ip string, i int) string {
	return fmt.Sprintf(`add counter ip %[1]s collisions%[2]d
add counter ip %[1]s drops%[2]d
add rule ip %[1]s prerouting ct original ip saddr %[3]s meta l4proto udp ct original ip daddr %[4]s ct original proto-dst 53 ct direction original ct status & (confirmed | seen-reply) == confirmed counter name "collisions%[2]d" numgen inc mod %[5]d 0 counter name "drops%[2]d" drop
`, raceTable, i, ip, clusterDNSIP, l.every)
}

// nftScript feeds script to nft -f -.
func nftScript(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s\n%s", err, out, script)
	}
	return nil
}

// loadTable (re)creates the table without rules.
func loadTable(ctx context.Context, t *testing.T) {
	t.Helper()
	_ = nft(ctx, "delete", "table", "ip", raceTable)
	if err := nftScript(ctx, raceTableDef()); err != nil {
		t.Fatalf("load nft table %s: %v", raceTable, err)
	}
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

func counter(ctx context.Context, t *testing.T, name string) int {
	t.Helper()
	out, err := exec.CommandContext(ctx, "nft", "list", "counter", "ip", raceTable, name).CombinedOutput()
	if err != nil {
		t.Errorf("nft list counter %s: %v: %s", name, err, out)
		return -1
	}
	m := packetsRE.FindSubmatch(out)
	if m == nil {
		t.Errorf("nft list counter %s: no packets in %q", name, out)
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// conntrackStats sums /proc/net/stat/nf_conntrack (hex, one line per CPU)
// of the node namespace.
func conntrackStats(t *testing.T) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/net/stat/nf_conntrack")
	if err != nil {
		t.Logf("conntrack statistics: %v", err)
		return map[string]int64{}
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	head := strings.Fields(lines[0])
	sum := map[string]int64{}
	for _, line := range lines[1:] {
		for i, f := range strings.Fields(line) {
			if v, err := strconv.ParseInt(f, 16, 64); err == nil && i < len(head) && head[i] != "entries" {
				sum[head[i]] += v
			}
		}
	}
	return sum
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

// rowLimit bounds one row: gailoop stops itself after -t seconds, the pod
// gets a minute more for start and stop.
func (l *raceLab) rowLimit(n int) (gailoopSeconds int, pod time.Duration) {
	s := n*7 + 30
	return s, time.Duration(s+60) * time.Second
}

// lookupLines keeps gailoop's "<ms> ok|fail ..." lines of a log.
func lookupLines(log string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && (f[1] == "ok" || f[1] == "fail") {
			if _, err := strconv.ParseFloat(f[0], 64); err == nil {
				out = append(out, sc.Text())
			}
		}
	}
	return out
}

// probe: the real race, no emulation. glibc and musl in one process each, the
// ClusterFirst configuration; the kernel's own counters around it.
func (l *raceLab) probe(ctx context.Context, t *testing.T) {
	t.Helper()
	if l.probeN == 0 {
		l.realRaceFired = "not probed"
		return
	}
	before := conntrackStats(t)
	jobs := []*podJob{{client: "glibc", image: glibcImage, n: l.probeN}, {client: "musl", image: muslImage, n: l.probeN}}
	l.runJobs(ctx, t, nsRacePlain, "", "rl-probe", jobs, false)
	done, slow := 0, 0
	for _, j := range jobs {
		if j.err != nil {
			l.fail(t, "real-race probe %s: %v", j.client, j.err)
		}
		for _, line := range j.lines {
			done++
			if ms, _ := strconv.ParseFloat(strings.Fields(line)[0], 64); ms > 1000 {
				slow++
			}
		}
		deletePod(nsRacePlain, j.name)
	}
	after := conntrackStats(t)
	l.check(t, done == 2*l.probeN, "real-race probe completed %d of %d lookups", done, 2*l.probeN)
	l.realRace = append(l.realRace, fmt.Sprintf("conntrack statistics of the node namespace over %d lookups (%d glibc + %d musl in one process each, ClusterFirst, no emulation): insert_failed %d → %d, clashres (clash_resolve) %d → %d, drop %d → %d; lookups over 1 s: %d",
		done, l.probeN, l.probeN, before["insert_failed"], after["insert_failed"], before["clashres"], after["clashres"], before["drop"], after["drop"], slow))
	l.realRaceFired = "no"
	if after["insert_failed"] > before["insert_failed"] || slow > 0 {
		l.realRaceFired = "yes"
	}
}

// holdMS is how long a client pod's init container waits before the app
// starts: the harness adds the pod's drop rule once the pod has an IP, which
// kubelet reports as the sandbox comes up, well before that.
const holdMS = 4000

// podJob is one client pod of a row (or of the probe) and what it measured.
type podJob struct {
	client, image string
	fork          bool
	n             int
	name          string
	created       *corev1.Pod
	ruled         bool
	done          bool
	phase         corev1.PodPhase
	lines         []string
	collisions    int
	drops         int
	err           error
}

// runJobs creates the pods of jobs in namespace ns side by side, adds each
// pod's drop rule (emulate) as soon as it has an IP, and waits (bounded)
// until all have finished; then it reads their logs and counters.
func (l *raceLab) runJobs(ctx context.Context, t *testing.T, ns, annotation, prefix string, jobs []*podJob, emulate bool) {
	t.Helper()
	maxN := 0
	for _, j := range jobs {
		maxN = max(maxN, j.n)
		secs, _ := l.rowLimit(j.n)
		args := []string{"-n", strconv.Itoa(j.n), "-t", strconv.Itoa(secs)}
		if j.fork {
			args = append(args, "-f")
		}
		args = append(args, raceName)
		p := clientPod(prefix+"-"+j.client, j.image, annotation, args...)
		if emulate {
			hold := p.Spec.Containers[0]
			hold.Name = "hold"
			// A numeric address: getaddrinfo answers it without any query.
			hold.Command = []string{"/gailoop", "-n", "2", "-i", strconv.Itoa(holdMS), "-t", "30", "127.0.0.1"}
			p.Spec.InitContainers = []corev1.Container{hold}
		}
		p.Labels = map[string]string{"dnsguard-racelab": prefix}
		j.name = p.Name
		created, err := e2e.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			j.err = fmt.Errorf("create pod %s/%s: %w", ns, p.Name, err)
			j.done = true
			continue
		}
		j.created = created
	}
	_, limit := l.rowLimit(maxN)
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
				if err := nftScript(ctx, l.podRule(cur.Status.PodIP, i)); err != nil {
					j.err, j.done = err, true
					continue
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
		j.lines = lookupLines(string(b))
		if j.phase == corev1.PodFailed && j.err == nil {
			j.err = fmt.Errorf("pod %s/%s failed%s\n%s", ns, j.name, diagnose(ctx, ns), b)
		}
		if emulate && j.ruled {
			j.collisions, j.drops = counter(ctx, t, "collisions"+strconv.Itoa(i)), counter(ctx, t, "drops"+strconv.Itoa(i))
		}
	}
}

// runMode measures one configuration: a fresh table, one pod per client
// side by side, one row each in rows.tsv.
func (l *raceLab) runMode(ctx context.Context, t *testing.T, mode, label, ns, annotation string) {
	t.Helper()
	var jobs []*podJob
	for _, c := range raceClients {
		if slices.Contains(l.clients, c.name) {
			jobs = append(jobs, &podJob{client: c.name, image: clientImage(c.libc), fork: c.fork, n: l.n})
		}
	}
	loadTable(ctx, t)
	t0 := time.Now()
	l.runJobs(ctx, t, ns, annotation, "rl-"+mode, jobs, true)
	if l.ruleListing == "" {
		if out, err := exec.CommandContext(ctx, "nft", "list", "table", "ip", raceTable).CombinedOutput(); err == nil {
			l.ruleListing = string(out)
		}
	}
	for _, j := range jobs {
		if j.err != nil {
			l.fail(t, "row %s × %s: %v", label, j.client, j.err)
		}
		t.Logf("row %s × %s: %d lookups, collisions %d, drops %d", label, j.client, len(j.lines), j.collisions, j.drops)
		file := filepath.Join(l.work, "row."+mode+"."+j.client+".txt")
		if err := os.WriteFile(file, []byte(strings.Join(j.lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(l.rows, "%s\t%s\t%s\t%s\t%d\t%d\n", mode, label, j.client, file, j.collisions, j.drops)
		if j.created != nil {
			l.checkPod(t, mode, j.created)
		}
	}
	if len(jobs) > 0 && jobs[0].created != nil {
		l.captureResolv(t, mode, ns, jobs[0].name)
	}
	for _, j := range jobs {
		deletePod(ns, j.name)
	}
	t.Logf("configuration %s: %d rows side by side in %.1fs", label, len(jobs), time.Since(t0).Seconds())
}

// checkPod: the stored pod carries what the mode promises.
func (l *raceLab) checkPod(t *testing.T, mode string, p *corev1.Pod) {
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
	case "nodelocal":
		ok, want = slices.Equal(ns, []string{nodeLocalIP, clusterDNSIP}), "nameservers ["+nodeLocalIP+" "+clusterDNSIP+"]"
	}
	if ok && l.podChecked[mode] {
		return // one PASS line per mode; every failure is listed
	}
	l.podChecked[mode] = true
	l.check(t, ok, "pod spec %s (%s): %s; got dnsPolicy %s, nameservers %v, sidecar %v", mode, p.Name, want, p.Spec.DNSPolicy, ns, sidecar)
}

// captureResolv copies the resolv.conf kubelet had containerd write for pod
// name from its sandbox directory (<containerd root>/<cri plugin>/sandboxes/
// <id>/{hostname,resolv.conf}; the sandbox of a finished pod stays until the
// pod is deleted) and checks it against the mode.
func (l *raceLab) captureResolv(t *testing.T, mode, ns, name string) {
	t.Helper()
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
		l.fail(t, "resolv.conf of %s (%s): no sandbox with hostname %s under %s/containerd", mode, name, name, runDir)
		return
	}
	if err := os.WriteFile(filepath.Join(l.work, "resolv."+mode), resolv, 0o644); err != nil {
		t.Fatal(err)
	}
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
	case "sidecar":
		ok, want = len(nameservers) > 0 && nameservers[0] == "127.0.0.1", "127.0.0.1 first"
	case "nodelocal":
		ok, want = slices.Equal(nameservers, []string{nodeLocalIP, clusterDNSIP}), "node cache "+nodeLocalIP+" first, "+clusterDNSIP+" second"
	}
	ok = ok && strings.HasPrefix(search, wantSearch)
	l.check(t, ok, "kubelet's resolv.conf for %s: %s, search %s… (got nameservers %v, search %q, options %v)", mode, want, wantSearch, nameservers, search, options)
}

// enableNodeCache: helm upgrade with the node cache, wait until the webhook
// hands pods its address. The returned func puts the previous value back;
// it is valid (and must be called) also when err is not nil.
func (l *raceLab) enableNodeCache(ctx context.Context, t *testing.T) (restore func(), err error) {
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
	if _, got, err := firstNameserverAfterRollout(ctx, nsRaceGuard, clientPod("rl-dryrun", glibcImage, "dnsconfig", "-n", "1", raceName), nodeLocalIP, 60*time.Second); err != nil {
		return restore, fmt.Errorf("the webhook does not give %s as first nameserver 60s after the upgrade (last: %v): %v", nodeLocalIP, got, err)
	}
	l.pass("helm upgrade --set nodeCache.enabled=true: DaemonSet rolled out, the webhook gives pods %s first", nodeLocalIP)
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

// checkSpread: the lookups' conntrack entries were DNATed to both CoreDNS
// pods (kube-proxy's random endpoint choice), read with conntrack -L.
func (l *raceLab) checkSpread(t *testing.T, coreDNS []string) {
	t.Helper()
	out, err := exec.Command("conntrack", "-L", "-p", "udp", "--orig-dst", clusterDNSIP).Output()
	if err != nil {
		l.fail(t, "conntrack -L --orig-dst %s: %v", clusterDNSIP, err)
		return
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		for _, ip := range coreDNS {
			// The reply direction's source is the endpoint kube-proxy chose.
			if i := strings.Index(line, "src="+ip+" "); i > strings.Index(line, "dport=53") {
				counts[ip]++
			}
		}
	}
	ok := len(coreDNS) == 2
	for _, ip := range coreDNS {
		ok = ok && counts[ip] > 0
	}
	l.check(t, ok, "kube-proxy's DNAT spread the lookups' conntrack entries over both CoreDNS pods: %v", counts)
}

// report runs test/racelab/report on rows.tsv and turns its FAIL lines
// into test errors.
func (l *raceLab) report(ctx context.Context, t *testing.T, report string) {
	t.Helper()
	write := func(name, s string) string {
		p := filepath.Join(l.work, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	checks := write("checks.txt", strings.Join(l.checks, "\n")+"\n")
	real := write("real.txt", strings.Join(l.real, "\n")+"\n")
	listing := l.ruleListing
	if listing == "" {
		listing = raceTableDef() + "# per client pod, added once the pod has its IP:\n" + l.podRule("<pod IP>", 0)
	}
	rule := write("rule.nft", strings.TrimRight(listing, "\n")+"\n")
	args := []string{"--lab=cluster", "--rows=" + l.rows.Name(), "--n=" + strconv.Itoa(l.n), "--every=" + strconv.Itoa(l.every),
		"--name=" + raceName, "--real-race=" + strings.Join(l.realRace, "; "), "--real-race-fired=" + l.realRaceFired,
		"--resolv-dir=" + l.work, "--seconds=" + strconv.Itoa(int(time.Since(l.start).Seconds())), "--checks=" + checks,
		"--real=" + real, "--rule=" + rule, "--command=make race-lab-cluster (or make e2e, after the scenarios)",
		"--machine=" + machine()}
	if os.Getenv("RACELAB_DOCS") != "0" {
		args = append(args, "--md="+filepath.Join(e2e.root, "docs", "race-lab-cluster.md"), "--svg="+filepath.Join(e2e.root, "docs", "race-lab-cluster.svg"))
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, report, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = os.WriteFile(filepath.Join(l.work, "report.out"), out.Bytes(), 0o644)
	t.Logf("race lab report:\n%s", out.String())
	passed, failed := 0, 0
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "PASS: "):
			passed++
		case strings.HasPrefix(line, "FAIL: "):
			failed++
			t.Error(line)
		}
	}
	if err != nil && failed == 0 {
		t.Errorf("report tool: %v", err)
	}
	t.Logf("race lab: %d harness checks, report %d passed, %d failed, %.0fs", len(l.checks), passed, failed, time.Since(l.start).Seconds())
}

func machine() string {
	uname, _ := exec.Command("uname", "-srm").Output()
	ver := func(pkg string) string {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
		if err != nil {
			return "?"
		}
		return string(out)
	}
	return fmt.Sprintf("%s, %d CPUs, glibc %s, musl %s", strings.TrimSpace(string(uname)), runtime.NumCPU(), ver("libc6"), ver("musl"))
}
