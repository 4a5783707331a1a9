package certs

import (
	"context"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestRunRepairsWithinSeconds: with a resync of an hour, whatever someone
// does to the objects the controller keeps is repaired by the watch event
// it causes, within seconds: a caBundle emptied by `helm upgrade`
// re-rendering the configuration, a deleted serving Secret, a deleted CA
// Secret, an edited serving Secret. Negative control: with watch() not
// registering its handler (or Run ignoring the wake channel), every case
// fails after `within`; with a break that writes nothing broken (the
// caBundle case writing the configuration back unchanged), that case fails
// on the count of writes.
func TestRunRepairsWithinSeconds(t *testing.T) {
	const within = 3 * time.Second
	for _, tc := range []struct {
		name   string
		break_ func(ctx context.Context, t *testing.T, client *fake.Clientset)
	}{
		{"caBundle emptied", func(ctx context.Context, t *testing.T, client *fake.Clientset) {
			api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
			mwc, err := api.Get(ctx, "dnsguard", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range mwc.Webhooks {
				mwc.Webhooks[i].ClientConfig.CABundle = nil
			}
			if _, err := api.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"serving Secret deleted", func(ctx context.Context, t *testing.T, client *fake.Clientset) {
			if err := client.CoreV1().Secrets("dg").Delete(ctx, "dnsguard-tls", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"CA Secret deleted", func(ctx context.Context, t *testing.T, client *fake.Clientset) {
			if err := client.CoreV1().Secrets("dg").Delete(ctx, "dnsguard-ca", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"serving Secret emptied", func(ctx context.Context, t *testing.T, client *fake.Clientset) {
			s, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-tls", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.Data = nil
			if _, err := client.CoreV1().Secrets("dg").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "dnsguard"},
				Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.dnsguard.io"}, {Name: "b.dnsguard.io"}},
			})
			c, err := NewController(client, ControllerConfig{
				Namespace: "dg", SecretName: "dnsguard-tls", CASecretName: "dnsguard-ca", WebhookConfigName: "dnsguard",
				ServiceName: "dnsguard", Validity: time.Hour, CAValidity: 2 * time.Hour, Resync: time.Hour, Logger: quietLog(),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); c.Run(ctx) }()
			defer func() { cancel(); wg.Wait() }()

			// consistent: both Secrets exist, the leaf verifies against the
			// caBundle of every webhook and is the serving Secret's ca.crt.
			consistent := func() bool {
				s, err1 := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-tls", metav1.GetOptions{})
				_, err2 := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-ca", metav1.GetOptions{})
				mwc, err3 := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "dnsguard", metav1.GetOptions{})
				if err1 != nil || err2 != nil || err3 != nil {
					return false
				}
				for _, w := range mwc.Webhooks {
					if verifyChain(w.ClientConfig.CABundle, s.Data[SecretKeyCert], "dnsguard.dg.svc", time.Now()) != nil ||
						string(w.ClientConfig.CABundle) != string(s.Data[SecretKeyCA]) {
						return false
					}
				}
				return true
			}
			waitFor := func(what string, d time.Duration) time.Duration {
				start := time.Now()
				for !consistent() {
					if time.Since(start) > d {
						t.Fatalf("%s: not consistent after %s", what, d)
					}
					time.Sleep(20 * time.Millisecond)
				}
				return time.Since(start)
			}
			waitFor("first reconcile", 10*time.Second)
			before := len(client.Actions())
			tc.break_(ctx, t, client)
			took := waitFor("after "+tc.name, within)
			// The controller may repair before a read here could see the
			// break (it did in one run of make test: "breaking left the
			// objects consistent"). Proof that it repaired is a write of its
			// own after the break's one write: without it the test would
			// check nothing.
			if n := writes(client.Actions()[before:]); n < 2 {
				t.Fatalf("after %s: %d writes (the break's, and want at least one by the controller): the objects were never inconsistent", tc.name, n)
			}
			t.Logf("repaired in %s", took.Round(time.Millisecond))
		})
	}
}

// writes counts the actions that change an object.
func writes(actions []k8stesting.Action) int {
	n := 0
	for _, a := range actions {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			n++
		}
	}
	return n
}
