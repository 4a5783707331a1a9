//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Fault (e) on two nodes: the node cache DaemonSet updates node by node,
// and a pod on each node that has only the node cache to ask shows whether
// either node's handover lost a query.

// nodePinnedBound is the p99 latency bound of a lookup through the node
// cache during its rolling update. A lookup the update lost would take the
// client's whole 2 s try and fail (timeout:2, attempts:1); lookups on this
// shared 2-core machine take 1 to 20 ms, with scheduling hiccups of a few
// tens of ms while containers start. 250 ms is an order of magnitude below
// a lost query and above that noise.
const nodePinnedBound = 250 * time.Millisecond

// startNodePinned starts, on each node, a glibc pod whose only nameserver
// is the node cache, looking up a name of its own in the upstream's zone
// (crossing to the upstream in the first node's namespace: from the second
// node over the link) and one looking up the kubernetes Service's name
// (answered by CoreDNS on the first node). It returns the pods; none with
// one node, where the node-local cells are the whole of (e).
//
// Negative control (FAULT_NEGATIVE=1 patches the DaemonSet to maxSurge 0,
// maxUnavailable 1 before the restart: the old pod stops before the new
// one starts), at 88d6c6f (FAULT_NEGATIVE=1 make fault-matrix): each of the
// four pods failed 1 lookup (on the first node after the whole 2 s try; on
// the second at once, nothing listening on 169.254.20.10 during its gap),
// and (e) went red. Positive at 88d6c6f (make fault-matrix): 0 failed, p99
// 5.6-9.7 ms.
func (s *fmState) startNodePinned(ctx context.Context) []string {
	if secondNode() == "" {
		return nil
	}
	by := nodeCachePods(ctx)
	s.check(len(by) == 2, "(e) node cache pods by node before the update: %v (want one on each of %v)", by, e2e.nodes)
	createNamespace(ctx, s.t, nsPlain, nil)
	var pods []string
	for i, n := range e2e.nodes[:2] {
		short := fmt.Sprintf("node%d", i+1)
		for _, c := range []struct {
			kind string
			args []string
		}{
			{"ext", []string{"-u", s.unique("e", "pinned", short), fmZone + "."}},
			{"svc", []string{"kubernetes.default.svc.cluster.local."}},
		} {
			name := "fm-e-" + c.kind + "-" + short
			if err := startNodeCacheLookups(ctx, name, n, c.args); err != nil {
				s.check(false, "(e) %v", err)
				continue
			}
			pods = append(pods, name)
		}
	}
	return pods
}

// checkNodePinned reads each pod's lookups of the window [start, end]: 0
// failed, p99 within nodePinnedBound, and the loop spans the window.
func (s *fmState) checkNodePinned(ctx context.Context, pods []string, start, end time.Time) {
	for _, pod := range pods {
		var first, last time.Time
		var ms []float64
		failed := 0
		for _, l := range podLookups(ctx, s.t, pod) {
			if first.IsZero() {
				first = l.At
			}
			last = l.At
			if l.At.Before(start) || l.At.After(end) {
				continue
			}
			ms = append(ms, l.MS)
			if !l.OK {
				failed++
			}
		}
		if len(ms) == 0 {
			s.check(false, "(e) %s: no lookup inside the update's window", pod)
			continue
		}
		sort.Float64s(ms)
		p99 := ms[min(len(ms)-1, len(ms)*99/100)]
		what := fmt.Sprintf("%s (node cache its only nameserver): %d lookups in the %.1f s window, %d failed, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			pod, len(ms), end.Sub(start).Seconds(), failed, ms[len(ms)/2], p99, slices.Max(ms))
		s.evidence("e", "%s", what)
		s.check(failed == 0 && time.Duration(p99*float64(time.Millisecond)) <= nodePinnedBound,
			"(e) %s (want 0 failed, p99 within %s)", what, nodePinnedBound)
		s.check(!first.After(start) && !last.Before(end.Add(-2*time.Second)),
			"(e) %s: its lookups (%s to %s) span the window (%s to %s)", pod,
			first.Format(time.TimeOnly), last.Format(time.TimeOnly), start.Format(time.TimeOnly), end.Format(time.TimeOnly))
	}
}

// nodeCachePods maps node name to its Ready, not terminating node cache pod.
func nodeCachePods(ctx context.Context) map[string]string {
	m := map[string]string{}
	l, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: nodeCacheSelector})
	if err != nil {
		return m
	}
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			m[p.Spec.NodeName] = p.Name
		}
	}
	return m
}
