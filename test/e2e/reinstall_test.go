//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// c8Reinstall: `helm install` right after `helm uninstall`, as a user
// fixing a bad install does. Uninstall must take the certificate Secrets
// with it, and pods created from the moment `helm install --wait` returns
// must be patched: no window in which the API server does not trust the
// new webhook.
//
// Found on this node: the pre-delete hook deleted the Secrets while the
// certificate controller still ran, the controller's watch recreated them,
// and the reinstall's webhook replicas were ready at once from those
// leftovers while caBundle stayed empty until the new controller got the
// old release's Lease; pods were admitted unpatched. Negative control: this
// test run against the product of commit 69aaa72 (no owner references, no
// check for the configuration, an always-ok /readyz) failed every check:
// both Secrets left after each uninstall, first patched admission 12.39 s
// after `helm install --wait` returned.
func c8Reinstall(ctx context.Context, t *testing.T) {
	// c7 uninstalled: nothing of the certificates may be left.
	noCertSecrets(ctx, t, "after c7's uninstall")
	publishRelease(ctx, t) // done by c0 unless c8 runs alone
	started := time.Now()
	if _, err := tool(ctx, "helm", installArgs("install")...); err != nil {
		t.Fatalf("helm install after uninstall: %v%s", err, diagnose(ctx, releaseNS))
	}
	returned := time.Now()
	// The uninstall's hook stops the old controller and deletes its Lease
	// (noCertSecrets checked it is gone), so the new controller leads at
	// once. Negative control, run at acc69be with the hook's
	// --controller-deployment and --lease-name removed from the chart (the
	// Lease left held by a controller that lost its Role): noCertSecrets
	// failed (the Lease still there after 30 s) and the install took 34.5 s;
	// 2.5 s with them (4128241).
	took := returned.Sub(started)
	t.Logf("helm install --wait after uninstall returned in %.1fs", took.Seconds())
	if took > 30*time.Second {
		t.Errorf("helm install --wait after uninstall took %.1fs; want under 30 s (the old controller's Lease left held?)", took.Seconds())
	}
	// Dry-run admissions from the moment --wait returned, every 200 ms for
	// 8 s (40 at most): every one must be patched. Deployments Ready is not
	// enough for that: before the chart's admission check hook, the first
	// patched admission came 0.01-0.43 s after --wait returned, and once
	// (1 run in 7) 3.50 s, kube-proxy programming the new Service's
	// endpoints on a loaded node. The hook's negative control is
	// c8NoWebhookFails.
	var first, lastUnpatched time.Duration = -1, -1
	var unpatchedAfter, n int
	for time.Since(returned) < 8*time.Second && n < 40 {
		n++
		p, err := e2e.client.CoreV1().Pods(nsEnabled).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "reinstall-"}, Spec: clientSpec(glibcImage),
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		at := time.Since(returned)
		switch {
		case err != nil:
			t.Errorf("dry-run pod %.1fs after install: %v", at.Seconds(), err)
		case patched(p):
			if first < 0 {
				first = at
			}
		default:
			lastUnpatched = at
			if first >= 0 {
				unpatchedAfter++
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	at := func(d time.Duration) string {
		if d < 0 {
			return "none"
		}
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	t.Logf("%d dry-run admissions over %.1fs after helm install --wait: first patched at %s, last unpatched at %s",
		n, time.Since(returned).Seconds(), at(first), at(lastUnpatched))
	if first < 0 || lastUnpatched >= 0 {
		t.Errorf("admissions after helm install --wait returned: first patched at %s, last unpatched at %s (%d unpatched after the first patched one); want every one patched%s",
			at(first), at(lastUnpatched), unpatchedAfter, diagnose(ctx, releaseNS))
	}
	if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	noCertSecrets(ctx, t, "after the second uninstall")
	c8NoWebhookFails(ctx, t)
	if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall after the failed install: %v", err)
	}
	c8HookObjectsGone(ctx, t)
	// Later tests install on their own and must find nothing either.
	noCertSecrets(ctx, t, "after the failed install's uninstall")
}

// c8NoWebhookFails is the admission check hook's negative control, run in
// every e2e: an install whose webhook configuration points at an address
// where nothing listens must fail, and the hook's log must say why. The
// same install with admissionCheck.enabled=false succeeds (and its pods are
// admitted unpatched): tried once by hand.
func c8NoWebhookFails(ctx context.Context, t *testing.T) {
	t.Helper()
	// No --wait: the hook runs once the objects exist, as it does for a
	// user who installs without --wait.
	args := append(append([]string{"install", release}, chartArgs()...), "--namespace", releaseNS, "--timeout", "2m",
		"--set", "webhookConfiguration.url=https://127.0.0.1:9/mutate", "--set", "admissionCheck.timeout=3s")
	started := time.Now()
	out, err := tool(ctx, "helm", args...)
	t.Logf("install with an unreachable webhook: %.1fs, helm said: %s", time.Since(started).Seconds(), lastLine(out))
	if err == nil {
		t.Errorf("helm install with an unreachable webhook succeeded; the admission check hook must fail it")
	}
	hook := "pod/" + fullname + "-admission-check"
	logs, lerr := tool(ctx, "kubectl", "logs", "-n", releaseNS, hook)
	if want := "admitted unchanged: the API server did not reach the webhook"; lerr != nil || !strings.Contains(logs, want) {
		t.Errorf("the failed hook's log (%v) does not say %q:\n%s", lerr, want, logs)
	}
}

// c8HookObjectsGone: a failed hook's Pod and RBAC stay for the user to read
// (Helm does not track them in the release); the uninstall's cleanup hook
// deletes them by name. Negative control (run once, at 1e93b3b): without
// --admission-check-name in the chart's cleanup Job, c8 failed here with
// the Pod left (Helm 3.22 removed the hook's ServiceAccount, Role and
// RoleBinding itself; the cleanup deletes those too, by name, for Helm
// versions that keep them).
func c8HookObjectsGone(ctx context.Context, t *testing.T) {
	t.Helper()
	var out string
	err := poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		out, err = tool(ctx, "kubectl", "get", "-n", releaseNS, "pod,serviceaccount,role,rolebinding", "-o", "name",
			"-l", "app.kubernetes.io/instance="+release+",app.kubernetes.io/component=admission-check")
		return err == nil && strings.TrimSpace(out) == "", nil
	})
	if err != nil {
		t.Errorf("30 s after the uninstall of the failed install, the admission check hook's objects are left: %s", out)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// noCertSecrets fails the test unless both certificate Secrets are gone
// within 30 s of an uninstall and stay gone for 3 s more. The hook deletes
// them; one the old controller re-created in a race with it names a
// configuration that no longer exists, and the garbage collector deletes it.
func noCertSecrets(ctx context.Context, t *testing.T, when string) {
	t.Helper()
	names := []string{tlsSecret, fullname + "-ca"}
	gone := func(ctx context.Context) (bool, error) {
		for _, name := range names {
			if _, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		// The controller's Lease goes with them (the hook deletes it once
		// the stopped controller has released it).
		if _, err := e2e.client.CoordinationV1().Leases(releaseNS).Get(ctx, fullname+"-certs", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, nil
		}
		return true, nil
	}
	start := time.Now()
	if err := poll(ctx, 30*time.Second, gone); err != nil {
		t.Errorf("%s: a certificate Secret (%v) or the Lease %s-certs is still there after 30 s%s", when, names, fullname, diagnose(ctx, releaseNS))
		return
	}
	took := time.Since(start)
	time.Sleep(3 * time.Second)
	if ok, _ := gone(ctx); !ok {
		t.Errorf("%s: a certificate Secret or the Lease came back after it was gone", when)
		return
	}
	t.Logf("%s: certificate Secrets and Lease gone after %.1fs", when, took.Seconds())
}
