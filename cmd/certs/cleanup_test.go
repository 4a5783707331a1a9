package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// heldLease is the controller's Lease as a running leader keeps it.
func heldLease(renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-certs", Namespace: "dg"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("dnsguard-certs-abc_1"),
			LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime:            &metav1.MicroTime{Time: renewed},
		},
	}
}

// The fake API server has no controller: a scale to 0 of the controller's
// Deployment is answered by releasing the Lease, as the real controller's
// SIGTERM path does (ReleaseOnCancel) while its Role still exists.
func releaseOnScale(client *fake.Clientset, release bool) {
	client.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		if release {
			l := heldLease(time.Now())
			l.Spec.HolderIdentity = ptr.To("")
			if err := client.Tracker().Update(coordinationv1.SchemeGroupVersion.WithResource("leases"), l, "dg"); err != nil {
				return true, nil, err
			}
		}
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-certs", Namespace: "dg"}}, nil
	})
}

// TestCleanup: the configuration goes before anything else; the controller
// is stopped and its Lease waited for before its Secrets and the Lease are
// deleted; objects already gone do not fail the hook (a retried uninstall).
// Negative control: without stopController the Lease is never released and
// the "released" row takes the whole wait (it fails on elapsed); with the
// Lease deleted before the wait, "released" fails on the order.
func TestCleanup(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	targets := cleanupTargets{webhookConfig: "dnsguard", namespace: "dg", secrets: []string{"dnsguard-tls", "dnsguard-ca"},
		deployment: "dnsguard-certs", lease: "dnsguard-certs", leaseWait: 2 * time.Second, admissionCheck: "dnsguard-admission-check"}
	for _, tc := range []struct {
		name       string
		lease      *coordinationv1.Lease
		releases   bool // the controller releases the Lease when scaled to 0
		minElapsed time.Duration
		maxElapsed time.Duration
	}{
		{"released", heldLease(time.Now()), true, 0, time.Second},
		{"expired", heldLease(time.Now().Add(-time.Minute)), false, 0, time.Second},
		{"never released", heldLease(time.Now().Add(time.Hour)), false, targets.leaseWait, targets.leaseWait + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client := fake.NewSimpleClientset(
				&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard"}},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-tls", Namespace: "dg"}},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "dg"}},
				&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-certs", Namespace: "dg"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)}},
				tc.lease,
				// What a failed admission check hook leaves.
				&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-admission-check", Namespace: "dg"}},
				&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-admission-check", Namespace: "dg"}},
				&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-admission-check", Namespace: "dg"}},
				&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-admission-check", Namespace: "dg"}},
				&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "dg"}},
			)
			releaseOnScale(client, tc.releases)
			start := time.Now()
			if err := cleanup(ctx, client, targets, log); err != nil {
				t.Fatal(err)
			}
			if e := time.Since(start); e < tc.minElapsed || e > tc.maxElapsed {
				t.Errorf("cleanup took %s, want %s to %s", e, tc.minElapsed, tc.maxElapsed)
			}
			var order []string
			for _, a := range client.Actions() {
				switch a.GetVerb() {
				case "delete":
					order = append(order, "delete "+a.GetResource().Resource)
				case "update":
					order = append(order, "update "+a.GetResource().Resource+"/"+a.GetSubresource())
				}
			}
			want := []string{"delete mutatingwebhookconfigurations", "update deployments/scale",
				"delete secrets", "delete secrets", "delete leases",
				"delete pods", "delete rolebindings", "delete roles", "delete serviceaccounts"}
			if len(order) != len(want) {
				t.Fatalf("actions %v, want %v", order, want)
			}
			for i := range want {
				if order[i] != want[i] {
					t.Fatalf("actions %v, want %v", order, want)
				}
			}
			if _, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-tls", metav1.GetOptions{}); err == nil {
				t.Error("serving Secret not deleted")
			}
			if _, err := client.CoordinationV1().Leases("dg").Get(ctx, "dnsguard-certs", metav1.GetOptions{}); err == nil {
				t.Error("Lease not deleted")
			}
			if _, err := client.CoreV1().Secrets("dg").Get(ctx, "other", metav1.GetOptions{}); err != nil {
				t.Errorf("an unnamed Secret was touched: %v", err)
			}
			if _, err := client.CoreV1().ServiceAccounts("dg").Get(ctx, "dnsguard-admission-check", metav1.GetOptions{}); err == nil {
				t.Error("the failed admission check's ServiceAccount not deleted")
			}
			if _, err := client.CoreV1().Pods("dg").Get(ctx, "app", metav1.GetOptions{}); err != nil {
				t.Errorf("an unnamed Pod was touched: %v", err)
			}
			// Second run: everything already gone, and quick.
			start = time.Now()
			if err := cleanup(ctx, client, targets, log); err != nil {
				t.Errorf("second run: %v", err)
			}
			if e := time.Since(start); e > time.Second {
				t.Errorf("second run took %s with the Lease gone", e)
			}
		})
	}
}
