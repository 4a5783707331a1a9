//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const nodeLocalIP = "169.254.20.10"

// nodeCacheMetricsPort is where c6 has the node cache serve /metrics on
// the node (nodeCache.metrics.port; not the default 9253, to show the
// value is honoured).
const nodeCacheMetricsPort = 9263

// nodeInternalIP is the InternalIP of the (single) node.
func nodeInternalIP(ctx context.Context) (string, error) {
	nodes, err := e2e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address, nil
			}
		}
	}
	return "", fmt.Errorf("no node with an InternalIP among %d nodes", len(nodes.Items))
}

// c6NodeLocal: with nodeCache.enabled the DaemonSet runs on the node, the
// link-local address answers, dnsconfig pods get it as first nameserver and
// their lookups are answered by it (its own metrics count them: a pod whose
// lookups fell back to the cluster DNS would not be). The rolling update of
// the DaemonSet under load is fault (e) of the fault matrix
// (TestFaultMatrix), with a latency bound: a "0 failed lookups" check here
// could not fail, since pods keep the cluster DNS as second nameserver and
// a gap in the node cache is a stall, not a failure.
func c6NodeLocal(ctx context.Context, t *testing.T) {
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values",
		"--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS="+clusterDNSIP,
		"--set", "nodeCache.metrics.enabled=true", "--set", fmt.Sprintf("nodeCache.metrics.port=%d", nodeCacheMetricsPort))...); err != nil {
		t.Fatalf("helm upgrade --set nodeCache.enabled=true: %v%s", err, diagnose(ctx, releaseNS))
	}
	ds := fullname + "-node-cache"
	if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "daemonset/"+ds, "--timeout=120s"); err != nil {
		t.Fatalf("node cache DaemonSet: %v%s", err, diagnose(ctx, releaseNS))
	}
	// The webhook picks up nodeLocal from its configuration on rollout.
	if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "deployment/"+fullname, "--timeout=120s"); err != nil {
		t.Fatal(err)
	}

	const lookups = 100
	spec := clientSpec(glibcImage)
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.Containers[0].Command = []string{"/gailoop", "-n", strconv.Itoa(lookups), "-t", "60", "-i", "20", "www.dnsguard.test"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nodelocal-loop"}, Spec: spec}
	took, got, err := firstNameserverAfterRollout(ctx, nsEnabled, pod, nodeLocalIP, 30*time.Second)
	if err != nil {
		t.Fatalf("the webhook does not give %s as first nameserver 30s after the rollout (last: %v): %v", nodeLocalIP, got, err)
	}
	t.Logf("new configuration in effect %.1fs after kubectl reported the rollout complete (old replicas drain meanwhile)", took.Seconds())
	p, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.DNSConfig == nil || len(p.Spec.DNSConfig.Nameservers) == 0 || p.Spec.DNSConfig.Nameservers[0] != nodeLocalIP {
		t.Fatalf("pod nameservers %v, want %s first", p.Spec.DNSConfig, nodeLocalIP)
	}
	if len(p.Spec.DNSConfig.Nameservers) < 2 || p.Spec.DNSConfig.Nameservers[1] != clusterDNSIP {
		t.Errorf("pod nameservers %v, want the cluster DNS %s as fallback", p.Spec.DNSConfig.Nameservers, clusterDNSIP)
	}
	err = poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && (cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed), nil
	})
	if err != nil {
		t.Fatalf("lookup pod did not finish: %v%s", err, diagnose(ctx, nsEnabled))
	}
	log, err := logs(ctx, nsEnabled, p.Name, "app")
	if err != nil {
		t.Fatal(err)
	}
	ok, fail := 0, 0
	for _, l := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(l, " ok "):
			ok++
		case strings.Contains(l, " fail "):
			fail++
		}
	}
	t.Logf("lookups through the node cache: %d ok, %d failed", ok, fail)
	if ok != lookups || fail > 0 {
		t.Errorf("lookups through the node cache: %d ok, %d failed; want %d ok", ok, fail, lookups)
	}
	// What a Prometheus (the chart's PodMonitor) scrapes: the node cache's
	// metrics on the node's own address, counting the lookups above.
	nodeIP, err := nodeInternalIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(nodeIP, strconv.Itoa(nodeCacheMetricsPort)))
	// An A and an AAAA query per name tried, all to the node cache first
	// (measured: 800 for 100 lookups through the search path). If the node
	// cache did not answer, glibc would ask the fallback and the count
	// would stay low. Negative control (not run yet): a node cache that
	// does not listen on 169.254.20.10 leaves this count at 0.
	if n := scrapeQueries(t, url); n < 2*lookups {
		t.Errorf("node cache metrics at %s count %d client queries, want at least %d from the lookup pod", url, n, 2*lookups)
	} else {
		t.Logf("node cache metrics scraped at %s: %d client queries", url, n)
	}
	_ = e2e.client.CoreV1().Pods(nsEnabled).Delete(ctx, p.Name, metav1.DeleteOptions{})
	// Back to the default installation for what follows.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "nodeCache.enabled=false")...); err != nil {
		t.Fatalf("helm upgrade --set nodeCache.enabled=false: %v", err)
	}
}
