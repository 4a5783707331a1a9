//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// TestSidecarResources is a benchmark, not a test of make e2e: it runs only
// when make sidecar-resources (hack/sidecar-resources.sh) sets
// SIDECARRES_REPORT, the file it writes its section of
// docs/sidecar-resources.md to.
//
// The injected resolver runs in a real pod at the chart's default
// resources and gets a miss flood (unique names, each forwarded to
// CoreDNS) from sockets this process opens inside the pod's network
// namespace, so the load generator's CPU and memory are not the pod's.
// Read: the sidecar container's memory cgroup (what the kubelet's limit
// and the OOM killer look at) every 100 ms and its kernel peak
// (max_usage_in_bytes), OOM kills, restarts. Then a control pod, the same
// but with a memory limit below what the flood needs
// (SIDECARRES_CONTROL_LIMIT, default 12Mi), must show the OOM kill or the
// restart: if it does not, the checks of the default pod prove nothing and
// the test fails.
func TestSidecarResources(t *testing.T) {
	out := os.Getenv("SIDECARRES_REPORT")
	if out == "" {
		t.Skip("a benchmark: make sidecar-resources runs it (SIDECARRES_REPORT)")
	}
	ctx := t.Context()
	flood := envDuration(t, "SIDECARRES_FLOOD", 30*time.Second)
	inflight := 1000
	controlLimit := os.Getenv("SIDECARRES_CONTROL_LIMIT")
	if controlLimit == "" {
		controlLimit = "12Mi"
	}

	if _, err := tool(ctx, "helm", "status", release, "-n", releaseNS); err != nil {
		publishRelease(ctx, t)
		if _, err := tool(ctx, "helm", append(installArgs("install"), "--create-namespace")...); err != nil {
			t.Fatalf("helm install: %v%s", err, diagnose(ctx, releaseNS))
		}
		t.Cleanup(func() {
			if _, err := tool(context.Background(), "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "3m"); err != nil {
				t.Errorf("helm uninstall: %v", err)
			}
		})
	}
	const ns = "sidecarres"
	createNamespace(ctx, t, ns, map[string]string{enabledLabel: "true"})
	t.Cleanup(func() {
		_ = e2e.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	// helm install --wait returns before the certificate controller has
	// put its CA into the webhook configuration; until then the API server
	// cannot call the webhook and (failurePolicy Ignore) admits pods
	// unpatched. A server-side dry run goes through the webhook.
	err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		spec := clientSpec(glibcImage)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Annotations: map[string]string{modeAnnotation: "sidecar"}}, Spec: spec}
		got, err := e2e.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(got.Spec.InitContainers) > 0 && got.Spec.InitContainers[0].Name == sidecarName, nil
	})
	if err != nil {
		t.Fatalf("the webhook does not inject the sidecar after 120 s: %v%s", err, diagnose(ctx, releaseNS))
	}

	var b strings.Builder
	def := floodPod(ctx, t, ns, "default", map[string]string{modeAnnotation: "sidecar"}, flood, inflight)
	fmt.Fprintf(&b, "### Default resources\n\n%s\n", def.markdown())
	switch {
	case def.oomKills > 0 || def.restarts > 0 || def.lastReason != "":
		t.Errorf("default pod: %d OOM kills, %d restarts (last: %q) under the flood", def.oomKills, def.restarts, def.lastReason)
	case def.answered == 0:
		t.Errorf("default pod: no query of the flood answered")
	}
	fmt.Fprintf(&b, "\n%s\n", def.verdict())

	ctl := floodPod(ctx, t, ns, "control", map[string]string{
		modeAnnotation:                     "sidecar",
		"dnsguard.io/sidecar-memory":       controlLimit,
		"dnsguard.io/sidecar-memory-limit": controlLimit,
	}, flood, inflight)
	fmt.Fprintf(&b, "\n### Negative control: memory limit %s\n\n%s\n", controlLimit, ctl.markdown())
	if ctl.oomKills == 0 && ctl.restarts == 0 {
		t.Errorf("control pod (limit %s): no OOM kill and no restart under the flood; the default pod's checks could not fail", controlLimit)
		fmt.Fprintf(&b, "\nThe control pod was neither OOM-killed nor restarted: this run does not show that the checks above can fail.\n")
	} else {
		fmt.Fprintf(&b, "\nThe control pod was OOM-killed %d times and restarted %d times (last termination: %s): the same checks on the default pod would have failed.\n", ctl.oomKills, ctl.restarts, orNone(ctl.lastReason))
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > 10*time.Minute {
		t.Fatalf("%s=%q: want a duration up to 10m", key, v)
	}
	return d
}

// floodResult is what one pod did under the flood.
type floodResult struct {
	name                       string
	requests, limits           corev1.ResourceList
	qos                        corev1.PodQOSClass
	flood                      time.Duration
	inflight                   int
	sent, answered, errs       int64
	idle, end                  harness.Memcg // the container's cgroup before and after
	sampledPeak                int64         // highest usage seen every 100 ms, KiB
	podPeak                    int64         // the pod cgroup's max_usage_in_bytes, KiB
	oomKills                   int64         // the container cgroup's, plus the kubelet's OOMKilled terminations
	restarts                   int32
	lastReason                 string
	hwm, anon                  int64 // the resolver's VmHWM and RssAnon at the end, KiB
	limitKiB                   int64
	cgroupMissing, processGone bool
}

func (r floodResult) markdown() string {
	var b strings.Builder
	mib := func(k int64) string { return fmt.Sprintf("%.1f", float64(k)/1024) }
	fmt.Fprintf(&b, "Pod `%s` (QoS %s), sidecar requests %s, limits %s. Flood: %s, %d lookups in flight (each on its own UDP socket in the pod's network namespace, unique names `10-a-b-c.sidecarres.pod.cluster.local` that CoreDNS answers from its `pods insecure` rule).\n\n",
		r.name, r.qos, resources(r.requests), resources(r.limits), r.flood, r.inflight)
	fmt.Fprintf(&b, "| sent | answered | errors or timeouts | cgroup idle MiB | **cgroup peak MiB** (max_usage_in_bytes) | peak seen every 100 ms | cgroup rss / cache at end | pod cgroup peak | resolver VmHWM / RssAnon at end | OOM kills | restarts |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	endCol := mib(r.end.RSS) + " / " + mib(r.end.Cache)
	proc := mib(r.hwm) + " / " + mib(r.anon)
	if r.cgroupMissing {
		endCol = "container restarted"
	}
	if r.processGone {
		proc = "process gone"
	}
	fmt.Fprintf(&b, "| %d | %d | %d | %s | **%s** | %s | %s | %s | %s | %d | %d |\n", r.sent, r.answered, r.errs,
		mib(r.idle.Usage), mib(max(r.end.MaxUsage, r.sampledPeak)), mib(r.sampledPeak), endCol, mib(r.podPeak), proc, r.oomKills, r.restarts)
	return b.String()
}

// verdict states the default pod's outcome and the limit's headroom, from
// the figures.
func (r floodResult) verdict() string {
	peak := max(r.end.MaxUsage, r.sampledPeak)
	if r.oomKills > 0 || r.restarts > 0 {
		return fmt.Sprintf("The sidecar was OOM-killed %d times and restarted %d times at its default limit: the limit is too low.", r.oomKills, r.restarts)
	}
	if peak <= 0 || r.limitKiB <= 0 {
		return "No cgroup peak or no memory limit was read."
	}
	return fmt.Sprintf("No OOM kill and no restart. The memory limit (%.0f MiB) is %.1f× the container's cgroup peak (%.1f MiB, page cache included); its anonymous memory (cgroup rss) at the end was %.1f MiB.",
		float64(r.limitKiB)/1024, float64(r.limitKiB)/float64(peak), float64(peak)/1024, float64(r.end.RSS)/1024)
}

func resources(l corev1.ResourceList) string {
	var parts []string
	for _, k := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := l[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", k, q.String()))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// floodPod starts a sidecar pod, floods its resolver and reads what it
// cost.
func floodPod(ctx context.Context, t *testing.T, ns, name string, annotations map[string]string, flood time.Duration, inflight int) floodResult {
	t.Helper()
	p := deployment(ctx, t, ns, name, 1, annotations, clientSpec(glibcImage, "kubernetes.default"))[0]
	r := floodResult{name: name, qos: p.Status.QOSClass, flood: flood, inflight: inflight}
	if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != sidecarName {
		t.Fatalf("pod %s: no %s sidecar", p.Name, sidecarName)
	}
	sc := p.Spec.InitContainers[0]
	r.requests, r.limits = sc.Resources.Requests, sc.Resources.Limits
	if q, ok := r.limits[corev1.ResourceMemory]; ok {
		r.limitKiB = q.Value() >> 10
	}
	dir, err := containerCgroup(&p, sidecarName)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := servingResolver(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.idle, err = harness.ReadMemcg(dir); err != nil {
		t.Fatal(err)
	}
	conns, err := socketsIn(pid, inflight, "127.0.0.1:53")
	if err != nil {
		t.Fatalf("sockets in the pod's network namespace: %v", err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// Sample the cgroup while the flood runs.
	stop := make(chan struct{})
	sampled := make(chan int64)
	go func() {
		var peak int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
				if m, err := harness.ReadMemcg(dir); err == nil {
					peak = max(peak, m.Usage)
				}
			}
		}
	}()
	r.sent, r.answered, r.errs = missFlood(ctx, conns, flood)
	close(stop)
	r.sampledPeak = <-sampled

	if m, err := harness.ReadMemcg(dir); err != nil {
		r.cgroupMissing = true // the container was OOM-killed and restarted: a new cgroup
	} else {
		r.end = m
		r.oomKills = m.OOMKills
	}
	if mem, err := harness.ReadMem(pid); err != nil {
		r.processGone = true
	} else {
		r.hwm, r.anon = mem.HWM, mem.Anon
	}
	if m, err := harness.ReadMemcg(filepath.Dir(dir)); err == nil {
		r.podPeak = m.MaxUsage
	}
	// The kubelet's view: restarts and why the last container ended (it
	// may take a moment to report a restart).
	_ = poll(ctx, 5*time.Second, func(ctx context.Context) (bool, error) {
		got, err := e2e.client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range got.Status.InitContainerStatuses {
			if s.Name == sidecarName {
				r.restarts = s.RestartCount
				if s.LastTerminationState.Terminated != nil {
					r.lastReason = s.LastTerminationState.Terminated.Reason
				}
			}
		}
		return r.restarts > 0 || !r.cgroupMissing, nil
	})
	if r.lastReason == "OOMKilled" && r.oomKills == 0 {
		r.oomKills = 1 // the killed container's cgroup, and its counter, are gone
	}
	t.Logf("%s: %+v", name, r)
	return r
}

// containerCgroup finds a container's cgroup v1 memory directory as the
// kubelet (cgroupfs driver) made it: kubepods[/<qos>]/pod<UID>/<container ID>.
func containerCgroup(p *corev1.Pod, container string) (string, error) {
	var id string
	for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name == container {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		return "", fmt.Errorf("pod %s: no container ID for %s", p.Name, container)
	}
	for _, pat := range []string{"/sys/fs/cgroup/memory/kubepods/pod%s/%s", "/sys/fs/cgroup/memory/kubepods/*/pod%s/%s"} {
		m, _ := filepath.Glob(fmt.Sprintf(pat, p.UID, id))
		if len(m) == 1 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("pod %s: no memory cgroup for container %s under /sys/fs/cgroup/memory/kubepods", p.Name, id)
}

// servingResolver is the PID of the resolver serving in the container's
// cgroup, the one started with --listen: the kubelet's exec probes
// (`runc init`, then `resolver probe`) run there too, now and then.
func servingResolver(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return 0, err
	}
	var found []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("%s/cgroup.procs: %q", dir, b)
		}
		argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(argv, []byte("\x00--listen=")) {
			continue // a probe, or gone already
		}
		found = append(found, pid)
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%s: want one serving resolver, found PIDs %v (all: %q)", dir, found, b)
	}
	return found[0], nil
}

// socketsIn opens n UDP sockets connected to addr inside the network
// namespace of process pid. The thread that enters the namespace is locked
// and never unlocked, so Go ends it rather than reuse it elsewhere.
func socketsIn(pid, n int, addr string) ([]*net.UDPConn, error) {
	type result struct {
		conns []*net.UDPConn
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			ch <- result{err: err}
			return
		}
		var conns []*net.UDPConn
		for range n {
			c, err := net.DialUDP("udp", nil, ua)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				ch <- result{err: err}
				return
			}
			conns = append(conns, c)
		}
		ch <- result{conns: conns}
	}()
	r := <-ch
	return r.conns, r.err
}

// missFlood keeps one lookup of a unique name in flight on every socket
// for d (2 s timeout each), and counts what was sent, answered NOERROR with
// an address, and everything else.
func missFlood(ctx context.Context, conns []*net.UDPConn, d time.Duration) (sent, answered, errs int64) {
	var seq atomic.Int64
	var s, a, e atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := &dns.Conn{Conn: c}
			cl := &dns.Client{Timeout: 2 * time.Second}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := seq.Add(1)
				m := new(dns.Msg).SetQuestion(fmt.Sprintf("10-%d-%d-%d.sidecarres.pod.cluster.local.", i>>16&255, i>>8&255, i&255), dns.TypeA)
				s.Add(1)
				r, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
					a.Add(1)
					continue
				}
				e.Add(1)
				var ne net.Error
				switch {
				case err != nil && !errors.As(err, &ne):
					return // the socket is broken, not just slow
				case err != nil && !ne.Timeout():
					// Refused: the resolver is gone (OOM-killed). Do not
					// spin until the kubelet restarts it.
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return s.Load(), a.Load(), e.Load()
}
