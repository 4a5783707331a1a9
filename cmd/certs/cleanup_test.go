package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestCleanupDeletesWebhookFirst: the configuration goes before anything
// else, and objects already gone do not fail the hook (a retried uninstall).
func TestCleanupDeletesWebhookFirst(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset(
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-tls", Namespace: "dg"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "dg"}},
	)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := cleanup(ctx, client, "dnsguard", "dg", []string{"dnsguard-tls", "dnsguard-ca"}, log); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, a := range client.Actions() {
		if a.GetVerb() == "delete" {
			order = append(order, a.GetResource().Resource)
		}
	}
	if len(order) != 3 || order[0] != "mutatingwebhookconfigurations" {
		t.Errorf("delete order %v, want the webhook configuration first, then the two Secrets", order)
	}
	if _, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-tls", metav1.GetOptions{}); err == nil {
		t.Error("serving Secret not deleted")
	}
	if _, err := client.CoreV1().Secrets("dg").Get(ctx, "other", metav1.GetOptions{}); err != nil {
		t.Errorf("an unnamed Secret was touched: %v", err)
	}
	// Second run: everything already gone.
	if err := cleanup(ctx, client, "dnsguard", "dg", []string{"dnsguard-tls"}, log); err != nil {
		t.Errorf("second run: %v", err)
	}
}
