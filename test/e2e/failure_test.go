//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func scaleWebhook(ctx context.Context, t *testing.T, replicas int) {
	t.Helper()
	if _, err := tool(ctx, "kubectl", "scale", "-n", releaseNS, "deployment/"+fullname, fmt.Sprintf("--replicas=%d", replicas)); err != nil {
		t.Fatal(err)
	}
	if replicas > 0 {
		if _, err := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "deployment/"+fullname, "--timeout=120s"); err != nil {
			t.Fatalf("webhook not back: %v%s", err, diagnose(ctx, releaseNS))
		}
		waitReady(ctx, t, releaseNS, webhookSelector, replicas, 60*time.Second)
		return
	}
	err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		l, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: webhookSelector})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("webhook pods still there 60s after scaling to 0")
	}
}

// c4WebhookDown: failurePolicy Ignore. With no webhook replica, pods are
// created unpatched and run; with the webhook back, they are patched again.
func c4WebhookDown(ctx context.Context, t *testing.T) {
	scaleWebhook(ctx, t, 0)
	pods := deployment(ctx, t, nsEnabled, "while-down", 2, nil, clientSpec(glibcImage, "echo"))
	for _, p := range pods {
		if patched(&p) {
			t.Errorf("pod %s patched although no webhook replica runs", p.Name)
		}
	}
	scaleWebhook(ctx, t, 2)
	// Ready replicas are reached through the Service once kube-proxy has
	// programmed their endpoints; until then the API server's calls still
	// fail and failurePolicy Ignore admits pods unpatched. Wait for the
	// first patched (dry-run) answer, then expect every pod patched.
	start := time.Now()
	err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		p, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}, Spec: clientSpec(glibcImage),
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && patched(p), nil
	})
	if err != nil {
		t.Fatalf("no patched admission 60s after the webhook came back")
	}
	t.Logf("first patched admission %.1fs after the replicas were Ready", time.Since(start).Seconds())
	pods = deployment(ctx, t, nsEnabled, "after-up", 1, nil, clientSpec(glibcImage, "echo"))
	if !patched(&pods[0]) {
		t.Errorf("pod %s not patched after the webhook came back", pods[0].Name)
	}
	for _, d := range []string{"while-down", "after-up"} {
		_ = e2e.client.AppsV1().Deployments(nsEnabled).Delete(ctx, d, metav1.DeleteOptions{})
	}
}

// podStream creates bare pods in ns at about rate per second until stop is
// closed, and counts them: created, patched, and failed creations. The pods
// are never scheduled to run (a nodeName nobody has would be rejected, so
// they use a nodeSelector no node matches) to keep the node's load low.
type podStream struct {
	created, patched, failed atomic.Int64
	errs                     sync.Map
	unpatched                sync.Map // pod name -> creation time
	prefix                   string
}

func streamPods(ctx context.Context, ns, prefix string, rate int, stop <-chan struct{}) (*podStream, *sync.WaitGroup) {
	s := &podStream{prefix: prefix}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				spec := clientSpec(glibcImage)
				spec.NodeSelector = map[string]string{"dnsguard.io/e2e": "no-such-node"}
				p, err := e2e.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", prefix, i), Labels: map[string]string{"e2e-stream": prefix}},
					Spec:       spec,
				}, metav1.CreateOptions{})
				if err != nil {
					s.failed.Add(1)
					s.errs.Store(err.Error(), true)
					return
				}
				s.created.Add(1)
				if patched(p) {
					s.patched.Add(1)
				} else {
					s.unpatched.Store(p.Name, time.Now().Format("15:04:05.000"))
				}
			}(i)
		}
	}()
	return s, &wg
}

// check fails on any failed creation and on any pod admitted unpatched
// (named, with its creation time, to match against the API server's log).
func (s *podStream) check(t *testing.T) {
	t.Helper()
	c, p, f := s.created.Load(), s.patched.Load(), s.failed.Load()
	t.Logf("%s: %d pods created, %d patched, %d creations failed", s.prefix, c, p, f)
	if c == 0 {
		t.Errorf("%s: no pod created", s.prefix)
	}
	if f > 0 {
		var msgs []string
		s.errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return len(msgs) < 5 })
		t.Errorf("%s: %d pod creations failed: %s", s.prefix, f, strings.Join(msgs, "; "))
	}
	if c != p {
		var names []string
		s.unpatched.Range(func(k, v any) bool { names = append(names, k.(string)+"@"+v.(string)); return true })
		t.Errorf("%s: %d of %d pods admitted unpatched: %s", s.prefix, c-p, c, strings.Join(names, " "))
	}
}

func deleteStream(ctx context.Context, ns, prefix string) {
	_ = e2e.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)},
		metav1.ListOptions{LabelSelector: "e2e-stream=" + prefix})
}
