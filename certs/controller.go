package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the CA Secret beyond ca.crt/ca.key: the previous CA certificate,
// kept in the trust bundle until it expires (its key is discarded).
const SecretKeyCAPrevious = "ca-previous.crt"

// Controller keeps the webhook's certificates current, the way
// controller-runtime's cert rotator and Kyverno do, with the CA key kept
// out of the webhook pods:
//
//   - the CA Secret (ca.crt, ca.key, ca-previous.crt) is read only by the
//     controller;
//   - the serving Secret (tls.crt, tls.key, ca.crt = the trust bundle) is
//     what the webhook mounts or watches;
//   - the caBundle of every webhook in the MutatingWebhookConfiguration is
//     the trust bundle: the current CA, plus the previous one until it
//     expires.
//
// Renewal happens once RenewFraction of a certificate's lifetime has passed
// (2/3 by default), so a third of the lifetime is left as margin for a
// failed run, an API outage or a slow Secret-volume refresh. A CA rotation
// first puts old+new CA into caBundle; a leaf signed by the new CA is
// written only after the configuration has held the new CA for
// BundlePropagation, so every API server trusts it before any webhook
// serves it. Reconcile is idempotent; Run loops it.
type Controller struct {
	client kubernetes.Interface
	cfg    ControllerConfig
	hosts  []string

	mu sync.Mutex
	// bundleSeen maps a CA's serial to when caBundle was first seen to
	// contain it (by this process: a new leader waits again).
	bundleSeen map[string]time.Time
}

// ControllerConfig configures a Controller. Zero values get the defaults
// noted.
type ControllerConfig struct {
	// Namespace of both Secrets and of the webhook Service.
	Namespace string
	// SecretName is the serving Secret (kubernetes.io/tls).
	SecretName string
	// CASecretName is the CA Secret (Opaque); never mounted by the webhook.
	CASecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration to keep in step;
	// empty: none (a webhook outside the cluster with its own trust).
	WebhookConfigName string
	// ServiceName, ClusterDomain and ExtraHosts give the SANs, as in
	// BootstrapConfig.
	ServiceName   string
	ClusterDomain string
	ExtraHosts    []string
	// Validity of a serving certificate (default 1 year) and of a CA
	// (default 10 years). CAValidity must exceed Validity; a leaf never
	// outlives its CA (issuance caps it).
	Validity   time.Duration
	CAValidity time.Duration
	// RenewFraction of the lifetime after which a certificate is renewed
	// (default 2/3).
	RenewFraction float64
	// BundlePropagation is how long caBundle must have held a new CA before
	// a leaf signed by it is served: API servers read webhook
	// configurations through an informer (default 10s).
	BundlePropagation time.Duration
	// Resync bounds the time between two checks (default 1m), so an edited
	// caBundle (say, by a helm upgrade) or a deleted Secret is repaired.
	Resync time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, are updated by every Reconcile.
	Metrics *ControllerMetrics
}

// NewController validates cfg and returns a Controller.
func NewController(client kubernetes.Interface, cfg ControllerConfig) (*Controller, error) {
	if cfg.Namespace == "" || cfg.SecretName == "" || cfg.CASecretName == "" {
		return nil, errors.New("certs controller: namespace, secret name and CA secret name are required")
	}
	if cfg.SecretName == cfg.CASecretName {
		return nil, fmt.Errorf("certs controller: serving and CA Secret are both %q; the CA key must not reach the webhook", cfg.SecretName)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = defaultDomain
	}
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultServingValidity
	}
	if cfg.CAValidity <= 0 {
		cfg.CAValidity = DefaultCAValidity
	}
	if cfg.CAValidity <= cfg.Validity {
		return nil, fmt.Errorf("certs controller: CA validity %s must be longer than the serving validity %s", cfg.CAValidity, cfg.Validity)
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = 2.0 / 3
	}
	if cfg.RenewFraction < 0.1 || cfg.RenewFraction > 0.9 {
		return nil, fmt.Errorf("certs controller: renew fraction %.2f outside [0.1, 0.9]", cfg.RenewFraction)
	}
	if cfg.BundlePropagation <= 0 {
		cfg.BundlePropagation = 10 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := BootstrapConfig{Namespace: cfg.Namespace, ServiceName: cfg.ServiceName, ClusterDomain: cfg.ClusterDomain, ExtraHosts: cfg.ExtraHosts}
	hosts := b.hosts()
	if len(hosts) == 0 {
		return nil, errors.New("certs controller: no service name and no extra hosts: the certificate would name no host")
	}
	return &Controller{client: client, cfg: cfg, hosts: hosts, bundleSeen: map[string]time.Time{}}, nil
}

// renewAt is when a certificate is due for renewal.
func (c *Controller) renewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * c.cfg.RenewFraction))
}

// ReconcileResult says what one Reconcile did and when the next is due.
type ReconcileResult struct {
	CARotated     bool
	LeafIssued    bool
	BundlePatched int
	// Next is when something will be due (a renewal, the end of a
	// propagation wait, the previous CA's expiry); Run wakes then at the
	// latest.
	Next time.Time
	// CA and Leaf are the certificates now stored.
	CA, Leaf *x509.Certificate
}

// Reconcile brings the CA Secret, caBundle and the serving Secret into
// step, in that order.
func (c *Controller) Reconcile(ctx context.Context) (*ReconcileResult, error) {
	res := &ReconcileResult{}
	now := c.cfg.Now()
	ca, prev, rotated, err := c.ensureCA(ctx, now)
	if err != nil {
		c.observeError("ca")
		return nil, err
	}
	res.CARotated, res.CA = rotated, ca.Cert
	bundle := append([]byte{}, ca.CertPEM...)
	if prev != nil && now.Before(prev.NotAfter) {
		bundle = append(bundle, encodeCert(prev.Raw)...)
	}
	next := c.renewAt(ca.Cert)
	if prev != nil && prev.NotAfter.Before(next) && now.Before(prev.NotAfter) {
		next = prev.NotAfter // drop it from the bundle then
	}

	// caBundle first: a leaf from a new CA must never be served before the
	// API servers trust that CA.
	trusted := true // nothing to wait for without a webhook configuration
	if c.cfg.WebhookConfigName != "" {
		n, present, err := c.syncBundle(ctx, bundle)
		if err != nil {
			c.observeError("cabundle")
			return nil, err
		}
		res.BundlePatched = n
		serial := ca.Cert.SerialNumber.String()
		c.mu.Lock()
		if present {
			if _, ok := c.bundleSeen[serial]; !ok {
				c.bundleSeen[serial] = now
			}
			since := c.bundleSeen[serial]
			trusted = !now.Before(since.Add(c.cfg.BundlePropagation))
			if !trusted {
				next = earliest(next, since.Add(c.cfg.BundlePropagation))
			}
		} else {
			// The configuration does not exist yet (first install): no API
			// server calls the webhook, so any leaf is fine.
			trusted = true
		}
		c.mu.Unlock()
	}

	leaf, issued, err := c.ensureServing(ctx, now, ca, bundle, trusted)
	if err != nil {
		c.observeError("serving")
		return nil, err
	}
	res.LeafIssued, res.Leaf = issued, leaf
	next = earliest(next, c.renewAt(leaf))
	res.Next = next
	if m := c.cfg.Metrics; m != nil {
		m.CAExpiry.Set(float64(ca.Cert.NotAfter.Unix()))
		m.ServingExpiry.Set(float64(leaf.NotAfter.Unix()))
		if rotated {
			m.Renewals.WithLabelValues("ca").Inc()
		}
		if issued {
			m.Renewals.WithLabelValues("serving").Inc()
		}
		m.LastSuccess.Set(float64(now.Unix()))
	}
	return res, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (c *Controller) observeError(stage string) {
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.Errors.WithLabelValues(stage).Inc()
	}
}

// ensureCA returns the current CA and the previous CA certificate (nil when
// none), creating or rotating as needed.
func (c *Controller) ensureCA(ctx context.Context, now time.Time) (ca *CA, prev *x509.Certificate, rotated bool, err error) {
	api := c.client.CoreV1().Secrets(c.cfg.Namespace)
	log := c.cfg.Logger.With("secret", c.cfg.Namespace+"/"+c.cfg.CASecretName)
	cur, err := api.Get(ctx, c.cfg.CASecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ca, adopted := c.adoptBootstrapCA(ctx, now)
		if ca == nil {
			if ca, err = newCAAt(caCommonName, c.cfg.CAValidity, now); err != nil {
				return nil, nil, false, err
			}
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: c.cfg.CASecretName, Namespace: c.cfg.Namespace, Labels: map[string]string{managedByLabel: managedByValue}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{SecretKeyCA: ca.CertPEM, SecretKeyCAKey: ca.KeyPEM},
		}
		if _, err := api.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return nil, nil, false, fmt.Errorf("create CA secret %s/%s: %w", c.cfg.Namespace, c.cfg.CASecretName, err)
		}
		if adopted {
			log.Info("moved the CA of the serving secret (certs bootstrap layout) into the CA secret", "notAfter", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			return ca, nil, false, nil
		}
		log.Info("created CA", "notAfter", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
		return ca, nil, true, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("get CA secret %s/%s: %w", c.cfg.Namespace, c.cfg.CASecretName, err)
	}
	if p, err := ParseCertificate(cur.Data[SecretKeyCAPrevious]); err == nil {
		prev = p
	}
	ca, loadErr := loadStoredCA(cur.Data)
	reason := ""
	switch {
	case loadErr != nil:
		reason = "CA unusable: " + loadErr.Error()
	case !now.Before(c.renewAt(ca.Cert)):
		reason = "CA past its renewal point"
	default:
		return ca, prev, false, nil
	}
	next, err := newCAAt(caCommonName, c.cfg.CAValidity, now)
	if err != nil {
		return nil, nil, false, err
	}
	upd := cur.DeepCopy()
	upd.Data = map[string][]byte{SecretKeyCA: next.CertPEM, SecretKeyCAKey: next.KeyPEM}
	prev = nil
	if loadErr == nil && now.Before(ca.Cert.NotAfter) {
		// The old CA stays trusted (certificate only) until it expires:
		// webhook replicas serve leaves it signed until they see the new one.
		upd.Data[SecretKeyCAPrevious] = ca.CertPEM
		prev = ca.Cert
	}
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[managedByLabel] = managedByValue
	// Update carries the resourceVersion read above: a concurrent writer
	// (a second leader after a partition) makes this fail, not overwrite.
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return nil, nil, false, fmt.Errorf("rotate CA in secret %s/%s: %w", c.cfg.Namespace, c.cfg.CASecretName, err)
	}
	log.Info("rotated CA", "reason", reason, "notAfter", next.Cert.NotAfter.UTC().Format(time.RFC3339))
	return next, prev, true, nil
}

// adoptBootstrapCA returns the CA that `certs bootstrap` (chart versions
// before the controller) kept in the serving Secret, if it is still before
// its renewal point: keeping it means caBundle stays valid across the
// upgrade and the running webhook pods' leaves stay trusted.
func (c *Controller) adoptBootstrapCA(ctx context.Context, now time.Time) (*CA, bool) {
	s, err := c.client.CoreV1().Secrets(c.cfg.Namespace).Get(ctx, c.cfg.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, false
	}
	ca, err := loadStoredCA(s.Data)
	if err != nil || !now.Before(c.renewAt(ca.Cert)) {
		return nil, false
	}
	return ca, true
}

// syncBundle writes bundle into every webhook's caBundle and reports how
// many changed and whether the configuration exists.
func (c *Controller) syncBundle(ctx context.Context, bundle []byte) (int, bool, error) {
	api := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := api.Get(ctx, c.cfg.WebhookConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.cfg.Logger.Info("webhook configuration does not exist (yet); caBundle not patched", "mutatingwebhookconfiguration", c.cfg.WebhookConfigName)
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("get mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
	upd := mwc.DeepCopy()
	changed := 0
	for i := range upd.Webhooks {
		if !bytes.Equal(upd.Webhooks[i].ClientConfig.CABundle, bundle) {
			upd.Webhooks[i].ClientConfig.CABundle = bundle
			changed++
		}
	}
	if changed == 0 {
		return 0, true, nil
	}
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return 0, false, fmt.Errorf("update caBundle of mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
	c.cfg.Logger.Info("patched caBundle", "mutatingwebhookconfiguration", c.cfg.WebhookConfigName, "webhooks", changed)
	return changed, true, nil
}

// ensureServing keeps the serving Secret current: bundle in ca.crt and a
// leaf for the hosts that is before its renewal point. A leaf from a CA
// other than ca is replaced only once trusted (caBundle has held ca long
// enough), unless it is unusable anyway.
func (c *Controller) ensureServing(ctx context.Context, now time.Time, ca *CA, bundle []byte, trusted bool) (*x509.Certificate, bool, error) {
	api := c.client.CoreV1().Secrets(c.cfg.Namespace)
	log := c.cfg.Logger.With("secret", c.cfg.Namespace+"/"+c.cfg.SecretName)
	cur, err := api.Get(ctx, c.cfg.SecretName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("get secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
	}
	exists := err == nil
	if exists && cur.Type != corev1.SecretTypeTLS {
		return nil, false, fmt.Errorf("secret %s/%s has type %q, want %q: delete it or choose another name", c.cfg.Namespace, c.cfg.SecretName, cur.Type, corev1.SecretTypeTLS)
	}
	var data map[string][]byte
	if exists {
		data = cur.Data
	}
	reason := ""
	leaf, pairErr := tlsPairOK(data)
	switch {
	case pairErr != nil:
		reason = pairErr.Error()
	case !c.hasHosts(leaf):
		reason = "serving certificate lacks a SAN"
	case now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter):
		reason = "serving certificate not valid now"
	case leaf.CheckSignatureFrom(ca.Cert) != nil:
		if trusted {
			reason = "serving certificate not signed by the current CA"
		}
	case !now.Before(c.renewAt(leaf)):
		reason = "serving certificate past its renewal point"
	}
	if reason == "" && leaf.CheckSignatureFrom(ca.Cert) != nil && !now.Before(c.renewAt(leaf)) {
		// Due, but the new CA is not trusted yet: the old leaf has a third
		// of its life left; wait for propagation.
		log.Info("serving certificate due; waiting for caBundle propagation first")
	}
	issued := false
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	if reason != "" {
		certPEM, keyPEM, err := ca.issueServingAt(c.hosts, c.cfg.Validity, now)
		if err != nil {
			return nil, false, err
		}
		out[SecretKeyCert], out[SecretKeyKey] = certPEM, keyPEM
		if leaf, err = ParseCertificate(certPEM); err != nil {
			return nil, false, err
		}
		issued = true
	}
	delete(out, SecretKeyCAKey) // never in the serving Secret (older layouts had it)
	out[SecretKeyCA] = bundle
	if exists && !issued && bytes.Equal(cur.Data[SecretKeyCA], bundle) && cur.Data[SecretKeyCAKey] == nil {
		return leaf, false, nil
	}
	if !exists {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: c.cfg.SecretName, Namespace: c.cfg.Namespace, Labels: map[string]string{managedByLabel: managedByValue}},
			Type:       corev1.SecretTypeTLS,
			Data:       out,
		}
		if _, err := api.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return nil, false, fmt.Errorf("create secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
		}
	} else {
		upd := cur.DeepCopy()
		upd.Data = out
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[managedByLabel] = managedByValue
		if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return nil, false, fmt.Errorf("update secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
		}
	}
	if issued {
		log.Info("issued serving certificate", "reason", reason, "serial", leaf.SerialNumber.String(), "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
	} else {
		log.Info("updated trust bundle in serving secret")
	}
	return leaf, issued, nil
}

func (c *Controller) hasHosts(leaf *x509.Certificate) bool {
	return !slices.ContainsFunc(c.hosts, func(h string) bool { return leaf.VerifyHostname(h) != nil })
}

// Run reconciles until ctx ends: at every due time, at least every Resync,
// and after an error with a backoff (1s doubling to Resync).
func (c *Controller) Run(ctx context.Context) {
	backoff := time.Second
	for {
		wait := c.cfg.Resync
		res, err := c.Reconcile(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.cfg.Logger.Warn("reconcile failed; retrying", "err", err, "in", backoff.String())
			wait, backoff = backoff, min(2*backoff, c.cfg.Resync)
		} else {
			backoff = time.Second
			if d := res.Next.Sub(c.cfg.Now()); d < wait {
				wait = max(d, 100*time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

