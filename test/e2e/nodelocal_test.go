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
// link-local address answers, dnsconfig pods get it as first nameserver, and
// a pod resolving in a loop sees no failed lookup across a rolling update of
// the DaemonSet.
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

	// A pod resolving every 50 ms for long enough to span the rolling update.
	spec := clientSpec(glibcImage)
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.Containers[0].Command = []string{"/gailoop", "-n", "900", "-t", "120", "-i", "50", "www.dnsguard.test"}
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
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && cur.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("loop pod not running: %v%s", err, diagnose(ctx, nsEnabled))
	}
	time.Sleep(3 * time.Second)
	if _, err := tool(ctx, "kubectl", "rollout", "restart", "-n", releaseNS, "daemonset/"+ds); err != nil {
		t.Fatal(err)
	}
	if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "daemonset/"+ds, "--timeout=120s"); err != nil {
		t.Fatalf("rolling update: %v", err)
	}
	err = poll(ctx, 150*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && (cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed), nil
	})
	if err != nil {
		t.Fatalf("loop pod did not finish: %v", err)
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
	t.Logf("lookups during the DaemonSet's rolling update: %d ok, %d failed", ok, fail)
	if ok < 100 || fail > 0 {
		t.Errorf("lookups across the rolling update: %d ok, %d failed; want 0 failed (and at least 100 lookups)", ok, fail)
	}
	// What a Prometheus (the chart's PodMonitor) scrapes: the node cache's
	// metrics on the node's own address, counting the lookups above.
	nodeIP, err := nodeInternalIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(nodeIP, strconv.Itoa(nodeCacheMetricsPort)))
	// The restart came a few seconds into a loop of about 45 s, so the
	// new instance saw most of its lookups (A and AAAA each).
	if n := scrapeQueries(t, url); n < 100 {
		t.Errorf("node cache metrics at %s count %d client queries, want at least 100 from the loop pod after the restart", url, n)
	} else {
		t.Logf("node cache metrics scraped at %s: %d client queries", url, n)
	}
	_ = e2e.client.CoreV1().Pods(nsEnabled).Delete(ctx, p.Name, metav1.DeleteOptions{})
	// Back to the default installation for what follows.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "nodeCache.enabled=false")...); err != nil {
		t.Fatalf("helm upgrade --set nodeCache.enabled=false: %v", err)
	}
}
