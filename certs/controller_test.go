package certs

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func newTestController(t *testing.T, objs ...any) (*Controller, *fake.Clientset, *time.Time) {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "dnsguard", UID: "mwc-1"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.dnsguard.io"}, {Name: "b.dnsguard.io"}},
	}
	client := fake.NewSimpleClientset(mwc)
	for _, o := range objs {
		if _, err := client.CoreV1().Secrets("dg").Create(context.Background(), o.(*corev1.Secret), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewController(client, ControllerConfig{
		Namespace: "dg", SecretName: "dnsguard-tls", CASecretName: "dnsguard-ca", WebhookConfigName: "dnsguard",
		ServiceName: "dnsguard", Validity: 30 * time.Second, CAValidity: 75 * time.Second,
		BundlePropagation: 2 * time.Second, Now: func() time.Time { return now }, Logger: quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, client, &now
}

type observed struct {
	leaf     *x509.Certificate
	leafPEM  []byte
	bundle   []byte // caBundle of the webhook configuration
	caSecret map[string][]byte
	serving  map[string][]byte
}

func observe(t *testing.T, client *fake.Clientset) observed {
	t.Helper()
	ctx := context.Background()
	s, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := client.CoreV1().Secrets("dg").Get(ctx, "dnsguard-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "dnsguard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks[1:] {
		if string(w.ClientConfig.CABundle) != string(mwc.Webhooks[0].ClientConfig.CABundle) {
			t.Fatal("webhooks of the configuration disagree on caBundle")
		}
	}
	leaf, err := ParseCertificate(s.Data[SecretKeyCert])
	if err != nil {
		t.Fatal(err)
	}
	return observed{leaf: leaf, leafPEM: s.Data[SecretKeyCert], bundle: mwc.Webhooks[0].ClientConfig.CABundle, caSecret: ca.Data, serving: s.Data}
}

// TestControllerClockForward runs the clock 1 s at a time across ten leaf
// lifetimes and several CA rotations. At every step the leaf in the serving
// Secret must verify against the caBundle the API server holds (else an
// admission fails), the old leaf must still verify against the bundle
// while a new CA propagates (webhook replicas still serve it), and the CA
// key must never be in the serving Secret.
func TestControllerClockForward(t *testing.T) {
	c, client, now := newTestController(t)
	ctx := context.Background()
	leaves, cas := map[string]bool{}, map[string]bool{}
	var prev observed
	rotations, waitsObserved := 0, 0
	for step := 0; step < 300; step++ {
		res, err := c.Reconcile(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !res.Next.After(*now) {
			t.Fatalf("step %d: next check %s not after now %s", step, res.Next, *now)
		}
		o := observe(t, client)
		if _, ok := o.serving[SecretKeyCAKey]; ok {
			t.Fatalf("step %d: CA key in the serving Secret", step)
		}
		if err := verifyChain(o.bundle, o.leafPEM, "dnsguard.dg.svc", *now); err != nil {
			t.Fatalf("step %d (t+%ds): served leaf does not verify against caBundle: %v", step, step, err)
		}
		if string(o.serving[SecretKeyCA]) != string(o.bundle) {
			t.Fatalf("step %d: ca.crt of the serving Secret differs from caBundle", step)
		}
		if prev.leaf != nil {
			// A replica that has not seen the new Secret yet still serves
			// the previous leaf: it must stay trusted while valid.
			if now.Before(prev.leaf.NotAfter) {
				if err := verifyChain(o.bundle, prev.leafPEM, "dnsguard.dg.svc", *now); err != nil {
					t.Fatalf("step %d: the previous leaf (still valid) is no longer trusted: %v", step, err)
				}
			}
		}
		if res.CARotated && step > 0 {
			rotations++
			if o.leaf.CheckSignatureFrom(res.CA) == nil {
				t.Fatalf("step %d: leaf signed by the new CA in the same step as the rotation (before caBundle propagated)", step)
			}
			if n := countCerts(o.bundle); n != 2 {
				t.Fatalf("step %d: caBundle has %d CAs during a rotation, want old+new", step, n)
			}
		}
		if o.leaf.CheckSignatureFrom(res.CA) != nil {
			waitsObserved++
		}
		if !now.Before(c.renewAt(o.leaf, c.cfg.Validity)) {
			t.Fatalf("step %d: leaf past its renewal point after reconcile", step)
		}
		leaves[o.leaf.SerialNumber.String()] = true
		cas[res.CA.SerialNumber.String()] = true
		prev = o
		*now = now.Add(time.Second)
	}
	if len(leaves) < 12 || rotations < 4 || waitsObserved == 0 {
		t.Errorf("300 s: %d leaves, %d CA rotations, %d propagation waits; want >= 12, >= 4, > 0", len(leaves), rotations, waitsObserved)
	}
	// Once the previous CA has expired it leaves the bundle.
	*now = now.Add(80 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if o := observe(t, client); countCerts(o.bundle) != 1 {
		t.Errorf("caBundle holds %d CAs after the previous one expired, want 1", countCerts(o.bundle))
	}
	t.Logf("%d leaves, %d CAs, %d rotations", len(leaves), len(cas), rotations)
}

// TestControllerIdempotent: a second reconcile at the same instant writes
// nothing.
func TestControllerIdempotent(t *testing.T) {
	c, client, _ := newTestController(t)
	ctx := context.Background()
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(client.Actions())
	res, err := c.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions()[before:] {
		if a.GetVerb() != "get" {
			t.Errorf("second reconcile did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if res.CARotated || res.LeafIssued || res.BundlePatched != 0 {
		t.Errorf("second reconcile: %+v", res)
	}
}

// TestControllerRepairsBundle: a caBundle emptied by someone (a helm
// upgrade that renders none) is written back on the next reconcile.
func TestControllerRepairsBundle(t *testing.T) {
	c, client, _ := newTestController(t)
	ctx := context.Background()
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, _ := api.Get(ctx, "dnsguard", metav1.GetOptions{})
	mwc.Webhooks[0].ClientConfig.CABundle = nil
	if _, err := api.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.BundlePatched != 1 {
		t.Errorf("patched %d webhooks, want 1", res.BundlePatched)
	}
	o := observe(t, client)
	if err := verifyChain(o.bundle, o.leafPEM, "dnsguard", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Error(err)
	}
}

// TestControllerLostCAKeepsServedLeafTrusted: when the CA object is gone
// (the CA Secret deleted, or an install from before the controller, whose
// serving Secret held the CA and its key), the new CA is put in caBundle
// beside the CA that signed the leaf being served, that leaf is served
// until the new CA has propagated, and the CA key leaves the serving
// Secret at once. Without the rule the running webhooks' leaf would be
// untrusted until they read a new one (negative control: with prev left
// nil in ensureCA for a lost CA, the first check fails).
func TestControllerLostCAKeepsServedLeafTrusted(t *testing.T) {
	for _, layout := range []string{"CA Secret deleted", "CA key in the serving Secret"} {
		t.Run(layout, func(t *testing.T) {
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			ca, err := newCAAt(caCommonName, 75*time.Second, now)
			if err != nil {
				t.Fatal(err)
			}
			crt, key, err := ca.issueServingAt(ServiceHosts("dnsguard", "dg", "cluster.local"), 30*time.Second, now)
			if err != nil {
				t.Fatal(err)
			}
			data := map[string][]byte{SecretKeyCA: ca.CertPEM, SecretKeyCert: crt, SecretKeyKey: key}
			if layout == "CA key in the serving Secret" {
				data[SecretKeyCAKey] = ca.KeyPEM
			}
			old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dnsguard-tls", Namespace: "dg"}, Type: corev1.SecretTypeTLS, Data: data}
			c, client, clock := newTestController(t, old)
			api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
			mwc, _ := api.Get(context.Background(), "dnsguard", metav1.GetOptions{})
			for i := range mwc.Webhooks {
				mwc.Webhooks[i].ClientConfig.CABundle = ca.CertPEM
			}
			if _, err := api.Update(context.Background(), mwc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			res, err := c.Reconcile(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			o := observe(t, client)
			if err := verifyChain(o.bundle, crt, "dnsguard.dg.svc", now); err != nil {
				t.Errorf("the leaf being served is not trusted by the new caBundle: %v", err)
			}
			if string(o.leafPEM) != string(crt) {
				t.Error("the served leaf was replaced before the new CA propagated")
			}
			if _, ok := o.serving[SecretKeyCAKey]; ok {
				t.Error("CA key left in the serving Secret")
			}
			if !res.CARotated || countCerts(o.bundle) != 2 {
				t.Errorf("rotated %v, caBundle holds %d CAs; want a new CA beside the served one", res.CARotated, countCerts(o.bundle))
			}
			*clock = now.Add(3 * time.Second)
			if _, err := c.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			if o := observe(t, client); o.leaf.CheckSignatureFrom(res.CA) != nil {
				t.Error("no leaf from the new CA after the propagation wait")
			}
		})
	}
}

func TestNewControllerRejects(t *testing.T) {
	client := fake.NewSimpleClientset()
	ok := ControllerConfig{Namespace: "dg", SecretName: "a", CASecretName: "b", ServiceName: "s"}
	for _, tc := range []struct {
		name, want string
		edit       func(*ControllerConfig)
	}{
		{"same secret", `both "x"`, func(c *ControllerConfig) { c.SecretName, c.CASecretName = "x", "x" }},
		{"one secret", "named together", func(c *ControllerConfig) { c.CASecretName = "" }},
		{"no store", "nowhere", func(c *ControllerConfig) { c.SecretName, c.CASecretName = "", "" }},
		{"CA shorter", "must be longer", func(c *ControllerConfig) { c.Validity, c.CAValidity = time.Hour, time.Minute }},
		{"negative validity", "validity -1h0m0s is negative", func(c *ControllerConfig) { c.Validity = -time.Hour }},
		{"no hosts", "no host", func(c *ControllerConfig) { c.ServiceName = "" }},
		{"bad host", `"bad host!"`, func(c *ControllerConfig) { c.Hosts = []string{"bad host!"} }},
		{"bad fraction", "0.95", func(c *ControllerConfig) { c.RenewFraction = 0.95 }},
		{"missing namespace", "namespace", func(c *ControllerConfig) { c.Namespace = "" }},
	} {
		cfg := ok
		tc.edit(&cfg)
		_, err := NewController(client, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewController(nil, ok); err == nil {
		t.Error("Secrets without a client accepted")
	}
}

// TestControllerShorterValidityTakesEffect: certificates issued under a long
// validity are replaced at once when the configuration asks for a shorter
// one (helm upgrade --set certificates.validity=...), not only at the old
// certificate's renewal point a year later.
func TestControllerShorterValidityTakesEffect(t *testing.T) {
	c, client, now := newTestController(t)
	ctx := context.Background()
	c.cfg.Validity, c.cfg.CAValidity = 8760*time.Hour, 87600*time.Hour
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	long := observe(t, client).leaf
	// The operator shortens both; an hour passes (far from the old
	// certificates' 2/3 points, past the new ones').
	c.cfg.Validity, c.cfg.CAValidity = 30*time.Second, 75*time.Second
	*now = now.Add(time.Hour)
	res, err := c.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.CARotated {
		t.Errorf("CA not rotated after caValidity was shortened: %+v", res)
	}
	// A leaf of the new CA waits for the bundle to propagate; after that
	// the new leaf has the new lifetime.
	*now = now.Add(3 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := observe(t, client).leaf
	if leaf.SerialNumber.Cmp(long.SerialNumber) == 0 {
		t.Fatalf("serving certificate not replaced after validity was shortened")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > time.Minute {
		t.Errorf("new serving certificate lives %s, want about 30s", life)
	}
}
