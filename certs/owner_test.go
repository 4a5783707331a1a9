package certs

import (
	"context"
	"errors"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	k8stesting "k8s.io/client-go/testing"
)

// TestReconcileCreatesOnlyForAnExistingConfig is the uninstall race: Helm's
// pre-delete hook deletes the webhook configuration, then the Secrets, while
// the controller still runs. A missing Secret must then stay missing; once
// the configuration exists again, both are created, owned by it. Negative
// control: with ownCertificates' call removed from Reconcile, the first
// Reconcile after the deletion recreates the Secret and this test fails.
func TestReconcileCreatesOnlyForAnExistingConfig(t *testing.T) {
	ctx := context.Background()
	c, client, _ := newTestController(t)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	before := observe(t, client)

	// The hook's order: configuration, then the Secrets.
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := mwcs.Delete(ctx, "dnsguard", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Existing objects are still kept (and not an error): a running webhook
	// keeps its certificate whatever happens to the configuration.
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile with the Secrets present and no configuration: %v", err)
	}
	var deleted []string
	for _, name := range []string{"dnsguard-tls", "dnsguard-ca"} {
		if err := client.CoreV1().Secrets("dg").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, name)
		_, err := c.Reconcile(ctx)
		if !errors.Is(err, ErrNoWebhookConfig) {
			t.Fatalf("after deleting %s: Reconcile err = %v, want ErrNoWebhookConfig", name, err)
		}
		for _, s := range deleted {
			if _, err := client.CoreV1().Secrets("dg").Get(ctx, s, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("after deleting %s: Secret %s exists (err %v): recreated without a configuration", name, s, err)
			}
		}
	}

	// A reinstall creates the configuration: everything comes back, from a
	// new CA.
	if _, err := mwcs.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "dnsguard", UID: "mwc-2"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.dnsguard.io"}, {Name: "b.dnsguard.io"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	after := observe(t, client)
	if string(after.bundle) == string(before.bundle) {
		t.Error("reinstall kept the uninstalled release's CA")
	}
	if err := c.Trusted(ctx); err != nil {
		t.Errorf("after the reinstall's reconcile: %v", err)
	}
	assertOwners(t, client, "mwc-2")
}

// TestSecretsOwnedByConfig: every Secret the controller keeps names the
// webhook configuration as its owner (so the garbage collector deletes it
// with the configuration, even one created in a race with the uninstall
// hook): Secrets it creates, Secrets that existed before (adopted), and
// Secrets of a configuration since re-created, which must lose the old
// reference (the collector would delete them for it). Negative control:
// with setOwner returning false without touching the Secret, every row
// fails.
func TestSecretsOwnedByConfig(t *testing.T) {
	ctx := context.Background()
	c, client, _ := newTestController(t)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	assertOwners(t, client, "mwc-1")

	// Adoption: strip the references, as a release before them wrote.
	for _, name := range []string{"dnsguard-tls", "dnsguard-ca"} {
		sec, err := client.CoreV1().Secrets("dg").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sec.OwnerReferences = nil
		if _, err := client.CoreV1().Secrets("dg").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	assertOwners(t, client, "mwc-1")

	// The configuration re-created under the same name (kubectl replace
	// --force): a new UID, and only it.
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	m, err := mwcs.Get(ctx, "dnsguard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.UID = "mwc-3"
	if _, err := mwcs.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	assertOwners(t, client, "mwc-3")
}

func assertOwners(t *testing.T, client kubernetes.Interface, uid types.UID) {
	t.Helper()
	for _, name := range []string{"dnsguard-tls", "dnsguard-ca"} {
		sec, err := client.CoreV1().Secrets("dg").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		refs := sec.OwnerReferences
		if len(refs) != 1 || refs[0].UID != uid || refs[0].Kind != "MutatingWebhookConfiguration" || refs[0].Name != "dnsguard" ||
			refs[0].BlockOwnerDeletion != nil || refs[0].Controller != nil {
			t.Errorf("Secret %s owners %+v: want only MutatingWebhookConfiguration dnsguard uid %s, no controller or blockOwnerDeletion", name, refs, uid)
		}
	}
}

// TestTrusted is the controller's readiness: the configuration's caBundle
// must hold a CA that signed the served leaf, in every webhook. Negative
// control: Trusted returning nil unconditionally fails every "want an error"
// row.
func TestTrusted(t *testing.T) {
	ctx := context.Background()
	other, err := NewCA("other", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(*admissionregistrationv1.MutatingWebhookConfiguration)
		noMWC   bool
		wantErr bool
	}{
		{name: "as reconciled"},
		{name: "caBundle emptied", edit: func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].ClientConfig.CABundle = nil
		}, wantErr: true},
		{name: "second webhook emptied", edit: func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[1].ClientConfig.CABundle = nil
		}, wantErr: true},
		{name: "another CA", edit: func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			for i := range m.Webhooks {
				m.Webhooks[i].ClientConfig.CABundle = other.CertPEM
			}
		}, wantErr: true},
		{name: "another CA beside ours", edit: func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			for i := range m.Webhooks {
				m.Webhooks[i].ClientConfig.CABundle = append(append([]byte{}, other.CertPEM...), m.Webhooks[i].ClientConfig.CABundle...)
			}
		}},
		{name: "no configuration", noMWC: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client, _ := newTestController(t)
			if err := c.Trusted(ctx); err == nil {
				t.Fatal("trusted before any certificate existed")
			}
			if _, err := c.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
			if tc.edit != nil {
				m, err := api.Get(ctx, "dnsguard", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				tc.edit(m)
				if _, err := api.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.noMWC {
				if err := api.Delete(ctx, "dnsguard", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			err := c.Trusted(ctx)
			if (err != nil) != tc.wantErr {
				t.Errorf("Trusted = %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}

// TestNoSecretCreatedWhenConfigVanishesMidReconcile is the race e2e c8 hit
// once: the configuration is already gone but both Secrets are still there
// when Reconcile looks, and the uninstall hook deletes the CA Secret
// before ensureCA reads it. No Secret may be created then: it would have
// no owner and outlive the release. Negative control: without the
// ownedOnly check in secretStore.save, Reconcile created a new CA Secret
// and this test failed.
func TestNoSecretCreatedWhenConfigVanishesMidReconcile(t *testing.T) {
	ctx := context.Background()
	c, client, _ := newTestController(t)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "dnsguard", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The CA Secret's first read (ownCertificates) finds it; the hook
	// deletes it before the next (ensureCA).
	caReads := 0
	client.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() != "dnsguard-ca" {
			return false, nil, nil
		}
		if caReads++; caReads == 2 {
			if err := client.Tracker().Delete(a.GetResource(), "dg", "dnsguard-ca"); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
	_, err := c.Reconcile(ctx)
	if !errors.Is(err, ErrNoWebhookConfig) {
		t.Errorf("Reconcile err = %v, want ErrNoWebhookConfig", err)
	}
	if _, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-ca", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("CA Secret re-created without a configuration (err %v)", err)
	}
}
