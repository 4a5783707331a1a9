package certs

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testNS     = "dnsguard"
	testSecret = "dnsguard-tls"
	testMWC    = "dnsguard"
)

// clock is a movable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newMWC(bundles ...[]byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testMWC}}
	for i, b := range bundles {
		mwc.Webhooks = append(mwc.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name:         []string{"pods.dnsguard.io", "pods-hostnet.dnsguard.io", "third.dnsguard.io"}[i],
			ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: b},
		})
	}
	return mwc
}

func testConfig(c *clock) BootstrapConfig {
	return BootstrapConfig{
		Namespace:         testNS,
		SecretName:        testSecret,
		WebhookConfigName: testMWC,
		ServiceName:       "dnsguard",
		ClusterDomain:     "cluster.local",
		RenewBefore:       24 * time.Hour,
		Validity:          7 * 24 * time.Hour,
		CAValidity:        60 * 24 * time.Hour,
		WebhookWait:       2 * time.Second,
		Backoff:           wait.Backoff{Duration: 5 * time.Millisecond, Factor: 1.5, Steps: 1000, Cap: 50 * time.Millisecond},
		Now:               c.now,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func getSecret(t *testing.T, cs *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := cs.CoreV1().Secrets(testNS).Get(context.Background(), testSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret: %v", err)
	}
	return s
}

func getMWC(t *testing.T, cs *fake.Clientset) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), testMWC, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get mwc: %v", err)
	}
	return m
}

// writes counts create/update/patch/delete actions: an idempotent run has
// none.
func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

func countCerts(b []byte) int {
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return n
		}
		n++
	}
}

func TestBootstrapCreatesSecretAndPatchesEveryWebhook(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil, []byte("stale")))
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretCreated || res.WebhooksPatched != 2 {
		t.Fatalf("result %+v, want created and 2 webhooks patched", res)
	}
	s := getSecret(t, cs)
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("secret type %q, want kubernetes.io/tls", s.Type)
	}
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if len(s.Data[k]) == 0 {
			t.Errorf("secret lacks %s", k)
		}
	}
	for _, h := range ServiceHosts("dnsguard", testNS, "cluster.local") {
		if err := VerifyChain(s.Data["ca.crt"], s.Data["tls.crt"], h, c.t); err != nil {
			t.Errorf("host %s: %v", h, err)
		}
	}
	for _, w := range getMWC(t, cs).Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, s.Data["ca.crt"]) {
			t.Errorf("webhook %s caBundle is not the secret's ca.crt", w.Name)
		}
	}
	if !bytes.Equal(res.CABundle, s.Data["ca.crt"]) {
		t.Error("result CABundle differs from the stored ca.crt")
	}
}

func TestBootstrapIsIdempotent(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil))
	if _, err := Bootstrap(context.Background(), cs, testConfig(c)); err != nil {
		t.Fatal(err)
	}
	before := getSecret(t, cs).DeepCopy()
	cs.ClearActions()
	c.t = c.t.Add(5 * 24 * time.Hour) // still outside the 24h window of a 7d leaf
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretReused || res.WebhooksPatched != 0 {
		t.Errorf("second run %+v, want reused, 0 patched", res)
	}
	if w := writes(cs); len(w) != 0 {
		t.Errorf("second run wrote %v, want no writes", w)
	}
	if !bytes.Equal(getSecret(t, cs).Data["tls.crt"], before.Data["tls.crt"]) {
		t.Error("tls.crt changed on an idempotent run")
	}
}

func TestBootstrapRenewsLeafButKeepsCA(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil))
	if _, err := Bootstrap(context.Background(), cs, testConfig(c)); err != nil {
		t.Fatal(err)
	}
	old := getSecret(t, cs).DeepCopy()
	bundle := getMWC(t, cs).Webhooks[0].ClientConfig.CABundle
	cs.ClearActions()
	c.t = c.t.Add(6*24*time.Hour + time.Hour) // inside the last 24h of the 7d leaf
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretLeafRenewed {
		t.Fatalf("action %s (%s), want leaf-renewed", res.Secret, res.Reason)
	}
	cur := getSecret(t, cs)
	if !bytes.Equal(cur.Data["ca.crt"], old.Data["ca.crt"]) || !bytes.Equal(cur.Data["ca.key"], old.Data["ca.key"]) {
		t.Error("CA changed although only the leaf needed renewal")
	}
	if bytes.Equal(cur.Data["tls.crt"], old.Data["tls.crt"]) {
		t.Error("tls.crt not renewed")
	}
	// The caBundle the API server already holds must trust the new leaf.
	if err := VerifyChain(bundle, cur.Data["tls.crt"], "dnsguard.dnsguard.svc", c.t); err != nil {
		t.Errorf("new leaf vs existing caBundle: %v", err)
	}
	if res.WebhooksPatched != 0 {
		t.Errorf("patched %d webhooks, want 0 (bundle unchanged)", res.WebhooksPatched)
	}
	if w := writes(cs); len(w) != 1 || w[0] != "update secrets" {
		t.Errorf("writes %v, want exactly one secret update", w)
	}
}

func TestBootstrapRenewsWhenSANMissing(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil))
	cfg := testConfig(c)
	cfg.ServiceName = "old-name"
	if _, err := Bootstrap(context.Background(), cs, cfg); err != nil {
		t.Fatal(err)
	}
	oldCA := getSecret(t, cs).Data["ca.crt"]
	cfg = testConfig(c)
	cfg.ExtraHosts = []string{"127.0.0.1", "localhost"}
	res, err := Bootstrap(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretLeafRenewed {
		t.Fatalf("action %s, want leaf-renewed for new SANs", res.Secret)
	}
	cur := getSecret(t, cs)
	if !bytes.Equal(cur.Data["ca.crt"], oldCA) {
		t.Error("CA replaced for a SAN change")
	}
	for _, h := range []string{"dnsguard.dnsguard.svc.cluster.local", "127.0.0.1", "localhost"} {
		if err := VerifyChain(cur.Data["ca.crt"], cur.Data["tls.crt"], h, c.t); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func TestBootstrapRotatesExpiringCAWithOverlap(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil, nil))
	cfg := testConfig(c)
	cfg.CAValidity = 10 * 24 * time.Hour
	if _, err := Bootstrap(context.Background(), cs, cfg); err != nil {
		t.Fatal(err)
	}
	// Day 6.5: the 7d leaf is renewed from the same CA; it is capped at the
	// CA's expiry (day 10).
	c.t = c.t.Add(6*24*time.Hour + 12*time.Hour)
	if res, err := Bootstrap(context.Background(), cs, cfg); err != nil || res.Secret != SecretLeafRenewed {
		t.Fatalf("day 6.5: %+v, %v; want leaf-renewed", res, err)
	}
	old := getSecret(t, cs).DeepCopy()
	c.t = c.t.Add(2*24*time.Hour + 13*time.Hour) // day 9+1h: CA in its last day
	res, err := Bootstrap(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretCARotated || res.WebhooksPatched != 2 {
		t.Fatalf("result %+v, want ca-rotated with 2 webhooks patched", res)
	}
	cur := getSecret(t, cs)
	if n := countCerts(cur.Data["ca.crt"]); n != 2 {
		t.Fatalf("ca.crt holds %d certificates, want new + old", n)
	}
	// Old pods still serve the old leaf until their volume refreshes: the
	// new bundle must trust both.
	for name, leaf := range map[string][]byte{"old leaf": old.Data["tls.crt"], "new leaf": cur.Data["tls.crt"]} {
		if err := VerifyChain(getMWC(t, cs).Webhooks[1].ClientConfig.CABundle, leaf, "dnsguard.dnsguard.svc", c.t); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The next run signs with the new CA and keeps the bundle as is.
	cs.ClearActions()
	res, err = Bootstrap(context.Background(), cs, cfg)
	if err != nil || res.Secret != SecretReused || len(writes(cs)) != 0 {
		t.Errorf("run after rotation: %+v, %v, writes %v; want reused, no writes", res, err, writes(cs))
	}
}

func TestBootstrapReplacesSecretWithoutCAKey(t *testing.T) {
	c := &clock{time.Now()}
	ca := mustCA(t)
	hosts := ServiceHosts("dnsguard", testNS, "cluster.local")
	crt, key, _ := ca.IssueServing(hosts, 7*24*time.Hour)
	cs := fake.NewClientset(newMWC(nil), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.CertPEM},
	})
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretCARotated || !strings.Contains(res.Reason, "ca.key") {
		t.Errorf("result %+v, want ca-rotated because ca.key is missing", res)
	}
	if len(getSecret(t, cs).Data["ca.key"]) == 0 {
		t.Error("ca.key still missing")
	}
}

func TestBootstrapRefusesNonTLSSecret(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"password": []byte("x")},
	})
	_, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err == nil || !strings.Contains(err.Error(), "kubernetes.io/tls") {
		t.Fatalf("err = %v, want a type error", err)
	}
	if w := writes(cs); len(w) != 0 {
		t.Errorf("wrote %v to a foreign secret", w)
	}
}

func TestBootstrapWaitsForWebhookConfiguration(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset()
	gets := 0
	cs.PrependReactor("get", "mutatingwebhookconfigurations", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		if gets == 3 {
			// Helm creates the configuration while the hook is waiting.
			if err := cs.Tracker().Add(newMWC(nil)); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if gets < 3 || res.WebhooksPatched != 1 {
		t.Errorf("gets %d, patched %d; want >=3 attempts then 1 patched", gets, res.WebhooksPatched)
	}
}

func TestBootstrapGivesUpOnMissingWebhookConfiguration(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset()
	cfg := testConfig(c)
	cfg.WebhookWait = 100 * time.Millisecond
	start := time.Now()
	_, err := Bootstrap(context.Background(), cs, cfg)
	if err == nil || !strings.Contains(err.Error(), testMWC) {
		t.Fatalf("err = %v, want an error naming the configuration", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %s, want about WebhookWait", d)
	}
	// The Secret is still there, so the Deployment can start.
	getSecret(t, cs)
}

func TestBootstrapFailsFastWhenForbidden(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset()
	gets := 0
	cs.PrependReactor("get", "mutatingwebhookconfigurations", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}, testMWC, nil)
	})
	_, err := Bootstrap(context.Background(), cs, testConfig(c))
	if !apierrors.IsForbidden(err) && (err == nil || !strings.Contains(err.Error(), "forbidden")) {
		t.Fatalf("err = %v, want forbidden", err)
	}
	if gets != 1 {
		t.Errorf("%d attempts, want 1 (no retry on forbidden)", gets)
	}
}

func TestBootstrapCreateRaceReusesWinner(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset(newMWC(nil))
	// Another hook run creates the Secret between our Get and Create.
	var winner []byte
	raced := false
	cs.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		other := testConfig(c)
		data, err := newSecretData(&other, nil, other.hosts())
		if err != nil {
			t.Fatal(err)
		}
		winner = data["ca.crt"]
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS}, Type: corev1.SecretTypeTLS, Data: data}
		if err := cs.Tracker().Add(s); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "secrets"}, testSecret)
	})
	res, err := Bootstrap(context.Background(), cs, testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != SecretReused || !bytes.Equal(res.CABundle, winner) {
		t.Errorf("result %s; want the racing winner's secret reused", res.Secret)
	}
}

func TestBootstrapOutDirAndSkipPatch(t *testing.T) {
	c := &clock{time.Now()}
	cs := fake.NewClientset()
	cfg := testConfig(c)
	cfg.WebhookConfigName = ""
	cfg.ServiceName = ""
	cfg.ExtraHosts = []string{"127.0.0.1", "localhost"}
	cfg.OutDir = filepath.Join(t.TempDir(), "certs")
	res, err := Bootstrap(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "mutatingwebhookconfigurations" {
			t.Errorf("touched the webhook configuration although none was named: %v", a)
		}
	}
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(cfg.OutDir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read("ca.crt"), res.CABundle) {
		t.Error("ca.crt in out-dir differs from the bundle")
	}
	if err := VerifyChain(read("ca.crt"), read("tls.crt"), "127.0.0.1", c.t); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutDir, "ca.key")); !os.IsNotExist(err) {
		t.Error("out-dir received the CA key; it should not leave the Secret")
	}
	if st, _ := os.Stat(filepath.Join(cfg.OutDir, "tls.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %v", st.Mode().Perm())
	}
}

func TestBootstrapConfigValidation(t *testing.T) {
	c := &clock{time.Now()}
	for name, mut := range map[string]func(*BootstrapConfig){
		"no namespace":          func(b *BootstrapConfig) { b.Namespace = "" },
		"no secret":             func(b *BootstrapConfig) { b.SecretName = "" },
		"no hosts":              func(b *BootstrapConfig) { b.ServiceName = ""; b.ExtraHosts = nil },
		"renew-before>validity": func(b *BootstrapConfig) { b.RenewBefore = 8 * 24 * time.Hour },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(c)
			mut(&cfg)
			if _, err := Bootstrap(context.Background(), fake.NewClientset(), cfg); err == nil {
				t.Error("want error")
			}
		})
	}
}
