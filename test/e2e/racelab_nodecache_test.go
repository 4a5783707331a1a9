//go:build e2e

package e2e

// The node cache for the race lab's node-local rows: helm upgrade with
// nodeCache.enabled and back.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
		ctx := context.Background()
		if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "nodeCache.enabled=false", "--timeout", "2m")...); err != nil {
			t.Errorf("helm upgrade --set nodeCache.enabled=false after the race lab: %v", err)
			return
		}
		// What runs next must not be admitted by a replica that still
		// hands out the node cache's address.
		if err := webhookSettled(ctx, nsRaceGuard, clusterDNSIP, 120*time.Second); err != nil {
			t.Errorf("after nodeCache.enabled=false: %v%s", err, diagnose(ctx, releaseNS))
		}
	}
	// A DaemonSet that is not Ready in 2 minutes on one idle node will not be.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values",
		"--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS="+clusterDNSIP, "--timeout", "2m")...); err != nil {
		return restore, fmt.Errorf("helm upgrade --set nodeCache.enabled=true did not finish in 2m; node cache: %s\n%v%s", nodeCacheLastLog(ctx), err, diagnose(ctx, releaseNS))
	}
	ds := "daemonset/" + fullname + "-node-cache"
	if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, ds, "--timeout=120s"); err != nil {
		return restore, fmt.Errorf("rollout of %s: %v%s", ds, err, diagnose(ctx, releaseNS))
	}
	// No row pod may be admitted by an old replica still draining.
	if err := webhookSettled(ctx, nsRaceGuard, nodeLocalIP, 120*time.Second); err != nil {
		return restore, fmt.Errorf("after nodeCache.enabled=true: %v%s", err, diagnose(ctx, releaseNS))
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
