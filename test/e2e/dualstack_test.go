//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// d1: dnsguard on a dual-stack cluster (E2E_IP_FAMILIES=dual, the default
// of hack/e2e.sh; test/cluster's Config.DualStack). Every pod has an IPv4
// and an IPv6 address; the question is which nameservers the webhook
// writes, from the cluster DNS Service's clusterIPs, and whether glibc and
// musl then resolve A and AAAA through each mode.
//
// Three shapes of the cluster DNS Service, in one cluster:
//
//   - dual: kube-system/kube-dns switched in place from SingleStack IPv4
//     (as kubeadm creates it; every other scenario runs with it) to
//     RequireDualStack: clusterIPs [10.96.0.10, fd00:10:96::…]. The
//     webhook's periodic re-check must follow the change.
//   - IPv6 only: a second Service, kube-system/kube-dns-v6, ipFamilies
//     [IPv6] SingleStack, on the same CoreDNS pods, and the chart's
//     dnsService pointed at it. The primary family of a Service cannot be
//     changed in place, and a cluster's primary family is fixed at its
//     start, so this is as far as an IPv4-primary cluster goes: what the
//     webhook reads (clusterIPs of the Service it is told) and every
//     lookup path of a pod (nameserver, sidecar upstream, node cache
//     address, all IPv6) are those of an IPv6-only cluster; the pods still
//     have an IPv4 address too, kubelet's clusterDNS stays 10.96.0.10, and
//     the node cache forwards cluster names to 10.96.0.10 (its
//     --cluster-upstream). An IPv6-primary or IPv6-only cluster did not run.
//   - the "default" mode (Kubernetes without dnsguard) with an IPv6
//     nameserver: what kubelet would write for clusterDNS [fd00:10:96::…]
//     (the pod's dnsConfig written by the test with dnsPolicy None and
//     kubelet's search path and ndots:5), since the node's kubelet keeps
//     clusterDNS 10.96.0.10 for every other scenario.
//
// Negative controls: E2E_D1_CONTROL=ipv4-nameserver (from the IPv6-only
// step on, the webhook told to write 10.96.0.10 only: chart
// nameservers={10.96.0.10}) and E2E_D1_CONTROL=no-v6-cache (the node
// cache's IPv6 address removed from its interface right after its
// rollout); what each turned red is written at the check it tests.

const (
	nsDual        = "e2e-dual"
	kubeDNSv6     = "kube-dns-v6"
	nodeCacheIPv6 = "fd00::10"
	// echo6 is a RequireDualStack Service without selector: CoreDNS
	// answers A and AAAA for its name from its two clusterIPs.
	echo6 = "echo6"
	// d1Lookups per name and pod.
	d1Lookups = 3
	// nodeCacheQueries: A and as many AAAA queries asked of each node
	// cache address from the node.
	nodeCacheQueries = 10
)

// The node upstream's records of www.dnsguard.test (test/cluster's
// dnsmasq.conf), which every mode must return, both families.
var wwwAddrs = []string{"10.200.9.10", "fd00:200::10"}

func d1DualStack(ctx context.Context, t *testing.T) {
	if !e2e.dualStack {
		t.Fatal("d1 needs a dual-stack cluster: run with E2E_IP_FAMILIES=dual (the default of hack/e2e.sh)")
	}
	control := os.Getenv("E2E_D1_CONTROL")
	if control != "" && control != "ipv4-nameserver" && control != "no-v6-cache" {
		t.Fatalf("E2E_D1_CONTROL=%q: want ipv4-nameserver or no-v6-cache", control)
	}
	checkNodeIPv6(ctx, t)
	createNamespace(ctx, t, nsDual, map[string]string{enabledLabel: "true"})
	echoIPs := createDualService(ctx, t)
	t.Cleanup(func() { d1Restore(t) })

	// 1. kube-dns dual-stack, in place.
	dual := setKubeDNSFamilies(ctx, t, true)
	t.Logf("kube-system/kube-dns switched to RequireDualStack: clusterIPs %v", dual)
	waitNameservers(ctx, t, dual, 60*time.Second)
	d1Modes(ctx, t, "dual", dual, echoIPs, []d1Mode{
		{name: "dnsconfig", annotation: "dnsconfig", want: dual},
		{name: "sidecar", annotation: "sidecar", want: append([]string{"127.0.0.1"}, dual...), upstreams: dual},
	})

	// 2. The node cache with both addresses, still dual-stack kube-dns.
	helmUpgrade(ctx, t, "--set", "nodeCache.enabled=true", "--set", "nodeCache.ipv6Address="+nodeCacheIPv6,
		"--set", "nodeCache.clusterDNS="+clusterDNSIP)
	if control == "no-v6-cache" {
		t.Logf("NEGATIVE CONTROL no-v6-cache: %s removed from the node cache's interface", nodeCacheIPv6)
		if out, err := exec.CommandContext(ctx, "ip", "-6", "addr", "del", nodeCacheIPv6+"/128", "dev", "dnsguard0").CombinedOutput(); err != nil {
			t.Fatalf("ip addr del %s: %v: %s", nodeCacheIPv6, err, out)
		}
	}
	checkNodeCacheBothFamilies(ctx, t)
	nodeLocalDual := append([]string{nodeLocalIP}, dual...)
	waitNameservers(ctx, t, nodeLocalDual, 60*time.Second)
	d1Modes(ctx, t, "dual", dual, echoIPs, []d1Mode{{name: "nodelocal", annotation: "dnsconfig", want: nodeLocalDual, nodeCache: true}})

	// 3. IPv6-only cluster DNS: kube-dns-v6, the node cache's IPv6 address.
	v6 := createKubeDNSv6(ctx, t)
	t.Logf("kube-system/%s: clusterIPs %v", kubeDNSv6, v6)
	helmUpgrade(ctx, t, "--set", "dnsService=kube-system/"+kubeDNSv6)
	if control == "ipv4-nameserver" {
		t.Logf("NEGATIVE CONTROL ipv4-nameserver: the webhook is told nameservers={%s}", clusterDNSIP)
		helmUpgrade(ctx, t, "--set", "nameservers={"+clusterDNSIP+"}")
	}
	nodeLocalV6 := append([]string{nodeCacheIPv6}, v6...)
	waitNameservers(ctx, t, nodeLocalV6, 60*time.Second)
	d1Modes(ctx, t, "ipv6", v6, echoIPs, []d1Mode{{name: "nodelocal", annotation: "dnsconfig", want: nodeLocalV6, nodeCache: true}})

	// 4. IPv6-only cluster DNS without the node cache.
	helmUpgrade(ctx, t, "--set", "nodeCache.enabled=false")
	waitNameservers(ctx, t, v6, 60*time.Second)
	d1Modes(ctx, t, "ipv6", v6, echoIPs, []d1Mode{
		{name: "default", annotation: "off", want: v6, kubeletStyle: true},
		{name: "dnsconfig", annotation: "dnsconfig", want: v6},
		{name: "sidecar", annotation: "sidecar", want: append([]string{"127.0.0.1"}, v6...), upstreams: v6},
	})
}

// checkNodeIPv6: the node has an IPv6 InternalIP (kubelet --node-ip
// v4,v6) and a pod gets an address of each family (the CNI's two ranges).
func checkNodeIPv6(ctx context.Context, t *testing.T) {
	nodes, err := e2e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("list nodes: %v", err)
	}
	var ips []string
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ips = append(ips, a.Address)
		}
	}
	if !slices.Equal(ips, []string{cluster.NodeIP, cluster.NodeIPv6}) {
		t.Fatalf("node InternalIPs %v, want [%s %s]", ips, cluster.NodeIP, cluster.NodeIPv6)
	}
}

// createDualService creates echo6 (RequireDualStack, no selector) and
// returns its clusterIPs.
func createDualService(ctx context.Context, t *testing.T) []string {
	policy := corev1.IPFamilyPolicyRequireDualStack
	svc, err := e2e.client.CoreV1().Services(nsDual).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: echo6},
		Spec:       corev1.ServiceSpec{IPFamilyPolicy: &policy, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s/%s (RequireDualStack): %v", nsDual, echo6, err)
	}
	if len(svc.Spec.ClusterIPs) != 2 {
		t.Fatalf("Service %s: clusterIPs %v, want one per family", echo6, svc.Spec.ClusterIPs)
	}
	return svc.Spec.ClusterIPs
}

// setKubeDNSFamilies switches kube-dns between SingleStack IPv4 and
// RequireDualStack (the API server allocates or releases its IPv6
// clusterIP) and returns its clusterIPs.
func setKubeDNSFamilies(ctx context.Context, t *testing.T, dual bool) []string {
	patch := `{"spec":{"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"],"clusterIPs":["` + clusterDNSIP + `"]}}`
	if dual {
		patch = `{"spec":{"ipFamilyPolicy":"RequireDualStack","ipFamilies":["IPv4","IPv6"]}}`
	}
	svc, err := e2e.client.CoreV1().Services("kube-system").Patch(ctx, "kube-dns", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch kube-system/kube-dns (dual-stack %v): %v", dual, err)
	}
	if want := map[bool]int{true: 2, false: 1}[dual]; len(svc.Spec.ClusterIPs) != want || svc.Spec.ClusterIPs[0] != clusterDNSIP {
		t.Fatalf("kube-dns clusterIPs %v after the patch, want %d starting with %s", svc.Spec.ClusterIPs, want, clusterDNSIP)
	}
	return svc.Spec.ClusterIPs
}

// createKubeDNSv6 creates kube-system/kube-dns-v6: IPv6 only, CoreDNS's
// pods and ports, and returns its clusterIPs.
func createKubeDNSv6(ctx context.Context, t *testing.T) []string {
	kd, err := e2e.client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	single := corev1.IPFamilyPolicySingleStack
	svc, err := e2e.client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kubeDNSv6},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: &single, IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol},
			Selector: kd.Spec.Selector, Ports: kd.Spec.Ports,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service kube-system/%s (IPv6 SingleStack): %v", kubeDNSv6, err)
	}
	if len(svc.Spec.ClusterIPs) != 1 || net.ParseIP(svc.Spec.ClusterIPs[0]).To4() != nil {
		t.Fatalf("%s clusterIPs %v, want one IPv6", kubeDNSv6, svc.Spec.ClusterIPs)
	}
	return svc.Spec.ClusterIPs
}

// d1Restore puts back what d1 changed: kube-dns SingleStack IPv4, no
// kube-dns-v6, the chart's dnsService, nameservers and node cache, and
// waits until the webhook gives pods 10.96.0.10 alone again (what the
// later scenarios expect). kube-dns first: the webhook's new pods read it
// at start, and would otherwise keep its IPv6 address for a re-check.
func d1Restore(t *testing.T) {
	ctx := context.Background()
	if _, err := e2e.client.CoreV1().Services("kube-system").Patch(ctx, "kube-dns", types.StrategicMergePatchType,
		[]byte(`{"spec":{"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"],"clusterIPs":["`+clusterDNSIP+`"]}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("kube-dns back to SingleStack IPv4: %v", err)
	}
	_ = e2e.client.CoreV1().Services("kube-system").Delete(ctx, kubeDNSv6, metav1.DeleteOptions{})
	// nameservers back to the chart's default, []: with "=null" Helm
	// keeps a null in the release's values, which the next
	// --reuse-values upgrade (c7's) fails the schema with.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "dnsService=kube-system/kube-dns",
		"--set-json", "nameservers=[]", "--set", "nodeCache.enabled=false", "--set", "nodeCache.ipv6Address=")...); err != nil {
		t.Errorf("helm upgrade back to the defaults after d1: %v", err)
	}
	waitNameservers(ctx, t, []string{clusterDNSIP}, 60*time.Second)
	_ = e2e.client.CoreV1().Namespaces().Delete(ctx, nsDual, metav1.DeleteOptions{})
}

func helmUpgrade(ctx context.Context, t *testing.T, set ...string) {
	t.Helper()
	if _, err := tool(ctx, "helm", append(append(installArgs("upgrade"), "--reuse-values"), set...)...); err != nil {
		t.Fatalf("helm upgrade %v: %v%s", set, err, diagnose(ctx, releaseNS))
	}
	for _, obj := range []string{"deployment/" + fullname, "daemonset/" + fullname + "-node-cache"} {
		out, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, obj, "--timeout=120s")
		if err != nil && !strings.Contains(out, "NotFound") {
			t.Fatalf("rollout of %s after helm upgrade %v: %v%s", obj, set, err, diagnose(ctx, releaseNS))
		}
	}
}

// waitNameservers waits (bounded) until the webhook gives a dnsconfig pod
// in nsDual exactly want as nameservers: after a rollout old replicas
// drain, and the webhook re-reads the DNS Service every
// dnsRecheckInterval (30 s). Negative control ipv4-nameserver (run once at
// 940afa6, E2E_D1_CONTROL=ipv4-nameserver E2E_RUN='TestE2E/(c0|d1)$'):
// steps 1 and 2 passed; from step 3 on this failed ("last: [169.254.20.10
// 10.96.0.10]", then "[10.96.0.10]"), and so did d1Check's nameserver,
// resolv.conf and sidecar-upstream checks in every node-local, dnsconfig
// and sidecar pod of the IPv6-only steps; the default pods (their
// dnsConfig is the test's) passed, their lookups too (the pods have IPv4).
func waitNameservers(ctx context.Context, t *testing.T, want []string, timeout time.Duration) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d1-dryrun", Annotations: map[string]string{modeAnnotation: "dnsconfig"}}, Spec: clientSpec(glibcImage)}
	start := time.Now()
	var got []string
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		p, err := e2e.client.CoreV1().Pods(nsDual).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || p.Spec.DNSConfig == nil {
			return false, nil
		}
		got = p.Spec.DNSConfig.Nameservers
		return slices.Equal(got, want), nil
	})
	if err != nil {
		// Not fatal: the pods' own checks say what the wrong nameservers
		// did (the negative control shows both).
		t.Errorf("the webhook does not give dnsconfig pods nameservers %v within %s (last: %v)", want, timeout, got)
		return
	}
	t.Logf("the webhook gives dnsconfig pods %v (%.1fs)", want, time.Since(start).Seconds())
}

// d1Mode is one mode's client pods (glibc and musl) and what they must get.
type d1Mode struct {
	name, annotation string
	// want: the pod's nameservers (its dnsConfig, and its resolv.conf).
	want []string
	// upstreams: the sidecar's --upstream servers (sidecar mode).
	upstreams []string
	// kubeletStyle: the pod brings its own dnsConfig (dnsPolicy None) as
	// kubelet writes it for ClusterFirst with clusterDNS = want.
	kubeletStyle bool
	// nodeCache: the node cache's counters must show the pods' lookups.
	nodeCache bool
}

// d1Modes creates a glibc and a musl pod per mode side by side in nsDual,
// then checks each: nameservers, resolv.conf, A and AAAA of an external
// name and of a dual-stack Service's short name (the search path) answered
// through that resolv.conf, and for the sidecar that its resolver answered
// them on 127.0.0.1.
func d1Modes(ctx context.Context, t *testing.T, shape string, dns, echoIPs []string, modes []d1Mode) {
	t.Helper()
	type job struct {
		m      d1Mode
		client string
		pod    *corev1.Pod
	}
	var jobs []*job
	for _, m := range modes {
		for _, c := range []struct{ name, image string }{{"glibc", glibcImage}, {"musl", muslImage}} {
			spec := clientSpec(c.image)
			if m.kubeletStyle {
				spec.DNSPolicy = corev1.DNSNone
				spec.DNSConfig = &corev1.PodDNSConfig{
					Nameservers: m.want,
					Searches:    []string{nsDual + ".svc.cluster.local", "svc.cluster.local", "cluster.local", cluster.TestZone},
					Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("5")}},
				}
			}
			name := fmt.Sprintf("d1-%s-%s-%s", shape, m.name, c.name)
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"d1": shape + "-" + m.name}, Annotations: map[string]string{modeAnnotation: m.annotation}}, Spec: spec}
			created, err := e2e.client.CoreV1().Pods(nsDual).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create %s: %v", name, err)
			}
			jobs = append(jobs, &job{m: m, client: c.name, pod: created})
		}
	}
	defer func() {
		for _, j := range jobs {
			deletePod(nsDual, j.pod.Name)
		}
	}()
	nodeCache := slices.ContainsFunc(modes, func(m d1Mode) bool { return m.nodeCache })
	var cacheBefore int
	if nodeCache {
		cacheBefore = scrapeQueries(t, "http://"+nodeCacheHealth+"/metrics")
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(shape+"/"+j.m.name+"/"+j.client, func(t *testing.T) { d1Check(ctx, t, j.pod, j.m, dns, echoIPs) })
		}()
	}
	wg.Wait()
	if nodeCache {
		// Each lookup of the two names asks A and AAAA at least once of the
		// first nameserver, the node cache (echo6 through the search path:
		// more). A node cache that did not answer on the address the pods
		// got first would leave the count where it was: the resolvers fall
		// back to the cluster DNS after their timeout, and the lookups
		// still succeed. Negative control no-v6-cache (run once at
		// 940afa6): in the IPv6 shape the count rose by 3 (want 24), while
		// every lookup still succeeded (the glibc pod in 25.8 s, waiting
		// out fd00::10 each time; musl, asking both at once, 2.8 s); in the
		// dual shape (169.254.20.10 first) it rose by 60, as without it.
		after := scrapeQueries(t, "http://"+nodeCacheHealth+"/metrics")
		want := 2 * 2 * d1Lookups * 2 // A+AAAA, 2 names, d1Lookups, glibc+musl
		t.Logf("%s shape: the node cache counted %d client queries during the node-local pods' lookups", shape, after-cacheBefore)
		if after-cacheBefore < want {
			t.Errorf("%s shape: the node cache counted %d client queries during the node-local lookups, want at least %d: the pods' first nameserver did not answer them", shape, after-cacheBefore, want)
		}
	}
}

func d1Check(ctx context.Context, t *testing.T, created *corev1.Pod, m d1Mode, dns, echoIPs []string) {
	ns := nsDual
	p := waitPodReady(ctx, t, ns, created.Name)
	if len(p.Status.PodIPs) != 2 {
		t.Errorf("pod %s: podIPs %v, want one per family", p.Name, p.Status.PodIPs)
	}
	var got []string
	if p.Spec.DNSConfig != nil {
		got = p.Spec.DNSConfig.Nameservers
	}
	if !slices.Equal(got, m.want) {
		t.Errorf("pod %s (%s mode): nameservers %v, want %v (cluster DNS clusterIPs %v)", p.Name, m.name, got, m.want, dns)
	}
	if rc, err := execIn(ctx, ns, p.Name, "app", "/bin/cat", "/etc/resolv.conf"); err != nil {
		t.Errorf("read /etc/resolv.conf in %s: %v", p.Name, err)
	} else {
		var inFile []string
		for _, l := range strings.Split(rc, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "nameserver" {
				inFile = append(inFile, f[1])
			}
		}
		if !slices.Equal(inFile, m.want) {
			t.Errorf("pod %s: /etc/resolv.conf nameservers %v, want %v:\n%s", p.Name, inFile, m.want, rc)
		}
	}
	if m.upstreams != nil {
		checkSidecarUpstreams(t, p, m.upstreams)
	}
	var before int
	if m.annotation == "sidecar" {
		before = resolverQueries(ctx, t, ns, p.Name)
	}
	for name, want := range map[string][]string{"www." + cluster.TestZone: wwwAddrs, echo6: echoIPs} {
		out, err := execIn(ctx, ns, p.Name, "app", "/gailoop", "-n", strconv.Itoa(d1Lookups), "-t", "30", name)
		if err != nil {
			t.Errorf("gailoop %s in %s: %v\n%s", name, p.Name, err, out)
			continue
		}
		if bad := checkAddrs(out, want); bad != "" {
			t.Errorf("pod %s (%s mode, nameservers %v): getaddrinfo(%s): %s\n%s", p.Name, m.name, got, name, bad, out)
		}
	}
	if m.annotation == "sidecar" {
		// The app's lookups reached the resolver on 127.0.0.1, where its
		// resolv.conf points first (a resolver that did not listen there
		// would count nothing; glibc and musl would then get their answers
		// from the fallback nameserver).
		after := resolverQueries(ctx, t, ns, p.Name)
		if after-before < 2*2*d1Lookups {
			t.Errorf("pod %s: the sidecar counted %d queries for %d lookups of 2 names (A+AAAA each), want at least %d", p.Name, after-before, d1Lookups, 2*2*d1Lookups)
		}
	}
}

// checkSidecarUpstreams: the sidecar asks exactly upstreams (IPv6 ones in
// brackets).
func checkSidecarUpstreams(t *testing.T, p *corev1.Pod, upstreams []string) {
	t.Helper()
	var got []string
	for _, c := range p.Spec.InitContainers {
		if c.Name != sidecarName {
			continue
		}
		for _, a := range c.Args {
			if u, ok := strings.CutPrefix(a, "--upstream="); ok {
				got = append(got, u)
			}
		}
	}
	var want []string
	for _, u := range upstreams {
		want = append(want, net.JoinHostPort(u, "53"))
	}
	if !slices.Equal(got, want) {
		t.Errorf("pod %s: sidecar upstreams %v, want %v", p.Name, got, want)
	}
}

// checkAddrs reads gailoop's lines ("<ms> ok <n> <addr>...") and says what
// is wrong: a failed lookup, or an answer without one of want (the A and
// the AAAA records).
func checkAddrs(out string, want []string) string {
	ok := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[1] {
		case "fail":
			return "lookup failed: " + l
		case "ok":
			ok++
			for _, w := range want {
				if !slices.Contains(f[2:], w) {
					return fmt.Sprintf("answer %q lacks %s", l, w)
				}
			}
		}
	}
	if ok != d1Lookups {
		return fmt.Sprintf("%d lookups ok, want %d", ok, d1Lookups)
	}
	return ""
}

func waitPodReady(ctx context.Context, t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := e2e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		p = cur
		return podReady(cur), nil
	})
	if err != nil {
		b, _ := json.Marshal(p.Status)
		t.Fatalf("pod %s/%s not Ready in 120s: %v\n%s%s", ns, name, err, b, diagnose(ctx, ns))
	}
	return p
}

// checkNodeCacheBothFamilies: the node cache is one process (one pod, one
// container on the node) and answers A and AAAA on both its addresses,
// asked from the node; its own query counter rises by what was asked on
// each. Negative control no-v6-cache (once at 940afa6): with fd00::10
// gone from its interface the queries to it timed out ("i/o timeout", A
// and AAAA) and this failed; 169.254.20.10 still answered both.
func checkNodeCacheBothFamilies(ctx context.Context, t *testing.T) {
	t.Helper()
	// On the first node, where the queries below are asked: a second node
	// runs its own node cache pod (the DaemonSet's).
	pods, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{
		LabelSelector: "dnsguard.io/component=node-cache", FieldSelector: "spec.nodeName=" + cluster.NodeName})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || len(pods.Items[0].Spec.Containers) != 1 {
		t.Errorf("node cache on %s: %d pods, want one with one container (one process for both families)", cluster.NodeName, len(pods.Items))
	}
	for _, addr := range []string{nodeLocalIP, nodeCacheIPv6} {
		before := scrapeQueries(t, "http://"+nodeCacheHealth+"/metrics")
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(addr, "53"))
		}}
		// Ten A and ten AAAA queries: the counter also sees the node
		// cache's liveness probe (one query to 169.254.20.10 every 10 s), so
		// a rise of one or two proves nothing (seen in the no-v6-cache
		// control: 1 with fd00::10 gone).
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var got []string
		for i := range 2 * nodeCacheQueries {
			fam := []string{"ip4", "ip6"}[i%2]
			ips, err := r.LookupIP(lctx, fam, "www."+cluster.TestZone+".")
			if err != nil {
				t.Errorf("node cache on %s: %s lookup of www.%s: %v", addr, fam, cluster.TestZone, err)
				break
			}
			for _, ip := range ips {
				if !slices.Contains(got, ip.String()) {
					got = append(got, ip.String())
				}
			}
		}
		cancel()
		slices.Sort(got)
		if !slices.Equal(got, wwwAddrs) {
			t.Errorf("node cache on %s answered %v, want %v", addr, got, wwwAddrs)
		}
		after := scrapeQueries(t, "http://"+nodeCacheHealth+"/metrics")
		t.Logf("node cache on %s: A and AAAA answered %v; its counter rose by %d", addr, got, after-before)
		if after-before < 2*nodeCacheQueries {
			t.Errorf("node cache counter rose by %d for the %d queries to %s, want at least as many", after-before, 2*nodeCacheQueries, addr)
		}
	}
}
