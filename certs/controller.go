package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Controller is dnsguard's one certificate lifecycle, the way
// controller-runtime's cert rotator and Kyverno do it, with the CA key kept
// out of the webhook pods:
//
//   - the CA object (ca.crt, ca.key, ca-previous.crt) is read only by the
//     controller;
//   - the serving object (tls.crt, tls.key, ca.crt = the trust bundle) is
//     what the webhook mounts or watches;
//   - the caBundle of every webhook in the MutatingWebhookConfiguration is
//     the trust bundle: the current CA, plus the previous one until it
//     expires.
//
// The objects are Secrets in a cluster, or files in a directory for a
// webhook that runs outside one (see store).
//
// Renewal happens once RenewFraction of a certificate's lifetime has passed
// (2/3 by default), so a third of the lifetime is left as margin for a
// failed run, an API outage or a slow Secret-volume refresh. A CA rotation
// first puts old+new CA into caBundle; a leaf signed by the new CA is
// written only after the configuration has held the new CA for
// BundlePropagation, so every API server trusts it before any webhook
// serves it. Reconcile is idempotent; Run calls it on every change of the
// objects it keeps and when the next renewal is due.
type Controller struct {
	client kubernetes.Interface
	store  store
	cfg    ControllerConfig
	hosts  []string

	mu sync.Mutex
	// bundleSeen maps a CA's serial to when caBundle was first seen to
	// contain it (by this process: a new leader waits again).
	bundleSeen map[string]time.Time
}

// ControllerConfig configures a Controller. Zero values get the defaults
// noted; negative durations are refused.
type ControllerConfig struct {
	// Namespace of both Secrets and of the webhook Service.
	Namespace string
	// SecretName is the serving Secret (kubernetes.io/tls) and CASecretName
	// the CA Secret (Opaque), never mounted by the webhook. Both empty:
	// the objects are kept in OutDir instead.
	SecretName, CASecretName string
	// OutDir receives the serving certificate, its key and the trust
	// bundle (tls.crt, tls.key, ca.crt). Without Secrets it is the store
	// itself, the CA being kept in OutDir/ca; with Secrets it is a copy for
	// a webhook outside the cluster.
	OutDir string
	// WebhookConfigName is the MutatingWebhookConfiguration to keep in step;
	// empty: none (local runs, a webhook with its own trust).
	WebhookConfigName string
	// ServiceName, with Namespace and ClusterDomain (default
	// cluster.local), gives the Service's DNS names as SANs; Hosts are
	// further SANs (IPs or DNS names).
	ServiceName   string
	ClusterDomain string
	Hosts         []string
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
	// Resync bounds the time between two reconciles when nothing changes
	// (default 10m). Changes to the objects wake Run at once through
	// watches and renewals are scheduled to the second, so this is only a
	// safety net (say, a store without watches: files).
	Resync time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, are updated by every Reconcile.
	Metrics *ControllerMetrics
}

// NewController validates cfg and returns a Controller. client may be nil
// when neither Secrets nor a webhook configuration are named.
func NewController(client kubernetes.Interface, cfg ControllerConfig) (*Controller, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("certs controller: %w", err)
	}
	c := &Controller{client: client, cfg: cfg, bundleSeen: map[string]time.Time{}}
	if cfg.SecretName != "" {
		c.store = &secretStore{client: client, namespace: cfg.Namespace, names: [2]string{caObject: cfg.CASecretName, servingObject: cfg.SecretName},
			ownedOnly: cfg.WebhookConfigName != ""}
	} else {
		c.store = &fileStore{dir: cfg.OutDir}
	}
	if client == nil && (cfg.SecretName != "" || cfg.WebhookConfigName != "") {
		return nil, errors.New("certs controller: Secrets and a webhook configuration need a Kubernetes client")
	}
	if cfg.ServiceName != "" {
		c.hosts = ServiceHosts(cfg.ServiceName, cfg.Namespace, cfg.ClusterDomain)
	}
	for _, h := range cfg.Hosts {
		if !slices.Contains(c.hosts, h) {
			c.hosts = append(c.hosts, h)
		}
	}
	return c, nil
}

// Validate reports the first problem of cfg, naming the value; it changes
// nothing.
func (cfg ControllerConfig) Validate() error {
	return cfg.setDefaults()
}

func (cfg *ControllerConfig) setDefaults() error {
	switch {
	case (cfg.SecretName == "") != (cfg.CASecretName == ""):
		return errors.New("the serving Secret and the CA Secret are named together")
	case cfg.SecretName != "" && cfg.SecretName == cfg.CASecretName:
		return fmt.Errorf("serving and CA Secret are both %q; the CA key must not reach the webhook", cfg.SecretName)
	case cfg.SecretName == "" && cfg.OutDir == "":
		return errors.New("no Secrets and no output directory: nowhere to keep the certificates")
	case (cfg.SecretName != "" || cfg.ServiceName != "") && cfg.Namespace == "":
		return errors.New("a namespace is required for Secrets and for a Service name")
	case cfg.ServiceName == "" && len(cfg.Hosts) == 0:
		return errors.New("no service name and no hosts: the certificate would name no host")
	}
	for _, h := range cfg.Hosts {
		if net.ParseIP(h) == nil && len(validation.IsDNS1123Subdomain(h)) > 0 {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = defaultDomain
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"validity", &cfg.Validity, DefaultServingValidity},
		{"CA validity", &cfg.CAValidity, DefaultCAValidity},
		{"bundle propagation", &cfg.BundlePropagation, 10 * time.Second},
		{"resync", &cfg.Resync, 10 * time.Minute},
	} {
		if *d.v < 0 {
			return fmt.Errorf("%s %s is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.CAValidity <= cfg.Validity {
		return fmt.Errorf("CA validity %s must be longer than the serving validity %s", cfg.CAValidity, cfg.Validity)
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = 2.0 / 3
	}
	if cfg.RenewFraction < 0.1 || cfg.RenewFraction > 0.9 {
		return fmt.Errorf("renew fraction %.2f outside [0.1, 0.9]", cfg.RenewFraction)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// renewAt is when a certificate is due for renewal: at RenewFraction of its
// lifetime, or of the configured lifetime when that is shorter, so that an
// operator who lowers the validity (helm upgrade) gets certificates of the
// new lifetime at once rather than after the old one's renewal point, the
// way cert-manager re-issues when a Certificate's duration changes.
func (c *Controller) renewAt(cert *x509.Certificate, configured time.Duration) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if configured > 0 && configured < life {
		life = configured
	}
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

// Reconcile brings the CA object, caBundle and the serving object into
// step, in that order.
func (c *Controller) Reconcile(ctx context.Context) (*ReconcileResult, error) {
	res := &ReconcileResult{}
	now := c.cfg.Now()
	// First, so that the loads below see the owner reference it may add.
	if err := c.ownCertificates(ctx); err != nil {
		return nil, err
	}
	serving, servingVersion, err := c.store.load(ctx, servingObject)
	if err != nil {
		c.observeError("serving")
		return nil, err
	}
	ca, prev, rotated, err := c.ensureCA(ctx, now, serving)
	if err != nil {
		c.observeError("ca")
		return nil, err
	}
	res.CARotated, res.CA = rotated, ca.Cert
	bundle := append([]byte{}, ca.CertPEM...)
	next := c.renewAt(ca.Cert, c.cfg.CAValidity)
	if prev != nil && now.Before(prev.NotAfter) {
		bundle = append(bundle, encodeCert(prev.Raw)...)
		next = earliest(next, prev.NotAfter) // drop it from the bundle then
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
		// Without a configuration (an uninstall under way) no API server calls the
		// webhook, so any leaf is fine.
		if present {
			serial := ca.Cert.SerialNumber.String()
			c.mu.Lock()
			if _, ok := c.bundleSeen[serial]; !ok {
				c.bundleSeen[serial] = now
			}
			trustedAt := c.bundleSeen[serial].Add(c.cfg.BundlePropagation)
			c.mu.Unlock()
			if trusted = !now.Before(trustedAt); !trusted {
				next = earliest(next, trustedAt)
			}
		}
	}

	leaf, issued, err := c.ensureServing(ctx, now, ca, bundle, trusted, serving, servingVersion)
	if err != nil {
		c.observeError("serving")
		return nil, err
	}
	res.LeafIssued, res.Leaf = issued, leaf
	res.Next = earliest(next, c.renewAt(leaf, c.cfg.Validity))
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
func (c *Controller) ensureCA(ctx context.Context, now time.Time, serving map[string][]byte) (ca *CA, prev *x509.Certificate, rotated bool, err error) {
	data, version, err := c.store.load(ctx, caObject)
	if err != nil {
		return nil, nil, false, err
	}
	log := c.cfg.Logger.With("ca", c.store.name(caObject))
	if p, err := ParseCertificate(data[SecretKeyCAPrevious]); err == nil {
		prev = p
	}
	old, loadErr := loadStoredCA(data)
	reason := ""
	switch {
	case data == nil:
		reason = "no CA yet"
	case loadErr != nil:
		reason = "CA unusable: " + loadErr.Error()
	case !now.Before(c.renewAt(old.Cert, c.cfg.CAValidity)):
		reason = "CA past its renewal point"
	default:
		return old, prev, false, nil
	}
	ca, err = newCAAt(caCommonName, c.cfg.CAValidity, now)
	if err != nil {
		return nil, nil, false, err
	}
	// The CA being replaced stays trusted (certificate only) until it
	// expires: webhook replicas serve leaves it signed until they see the
	// new one. When it is lost or unusable (the CA Secret deleted, or an
	// install whose serving Secret held the CA), the CA that signed the
	// leaf being served takes its place, so losing the CA object never
	// breaks caBundle for a running webhook.
	prev = nil
	if loadErr == nil && now.Before(old.Cert.NotAfter) {
		prev = old.Cert
	} else if p := servedCA(serving, now); p != nil {
		prev = p
	}
	out := map[string][]byte{SecretKeyCA: ca.CertPEM, SecretKeyCAKey: ca.KeyPEM}
	if prev != nil {
		out[SecretKeyCAPrevious] = encodeCert(prev.Raw)
	}
	if err := c.store.save(ctx, caObject, out, version); err != nil {
		return nil, nil, false, err
	}
	log.Info("new CA", "reason", reason, "notAfter", ca.Cert.NotAfter.UTC().Format(time.RFC3339), "keepsTrusting", prev != nil)
	return ca, prev, true, nil
}

// servedCA returns the certificate in the serving object's ca.crt that
// signed its tls.crt, if still valid.
func servedCA(serving map[string][]byte, now time.Time) *x509.Certificate {
	leaf, err := ParseCertificate(serving[SecretKeyCert])
	if err != nil {
		return nil
	}
	return signerIn(serving[SecretKeyCA], leaf, now)
}

// signerIn returns the CA certificate in bundle that signed leaf and is
// valid at now, or nil.
func signerIn(bundle []byte, leaf *x509.Certificate, now time.Time) *x509.Certificate {
	for _, c := range parseCertificates(bundle) {
		if c.IsCA && now.Before(c.NotAfter) && leaf.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// ensureServing keeps the serving object current: bundle in ca.crt and a
// leaf for the hosts that is before its renewal point. A leaf from a CA
// other than ca is replaced only once trusted (caBundle has held ca long
// enough), unless it is unusable anyway.
func (c *Controller) ensureServing(ctx context.Context, now time.Time, ca *CA, bundle []byte, trusted bool, data map[string][]byte, version any) (*x509.Certificate, bool, error) {
	log := c.cfg.Logger.With("serving", c.store.name(servingObject))
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
		} else {
			// Due or not, the old leaf (a third of its life left at
			// worst) is served until the new CA has propagated.
			log.Info("serving certificate from the previous CA kept until caBundle has propagated")
		}
	case !now.Before(c.renewAt(leaf, c.cfg.Validity)):
		reason = "serving certificate past its renewal point"
	}
	// Exactly these keys: anything else (say, the CA key that an earlier
	// layout kept here) leaves the serving object.
	out := map[string][]byte{SecretKeyCA: bundle, SecretKeyCert: data[SecretKeyCert], SecretKeyKey: data[SecretKeyKey]}
	if reason != "" {
		certPEM, keyPEM, err := ca.issueServingAt(c.hosts, c.cfg.Validity, now)
		if err != nil {
			return nil, false, err
		}
		out[SecretKeyCert], out[SecretKeyKey] = certPEM, keyPEM
		if leaf, err = ParseCertificate(certPEM); err != nil {
			return nil, false, err
		}
	}
	if data == nil || !maps.EqualFunc(data, out, bytes.Equal) {
		if err := c.store.save(ctx, servingObject, out, version); err != nil {
			return nil, false, err
		}
		if reason != "" {
			log.Info("issued serving certificate", "reason", reason, "serial", leaf.SerialNumber.String(), "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
		} else {
			log.Info("updated the trust bundle of the serving certificate")
		}
	}
	if _, ok := c.store.(*secretStore); ok && c.cfg.OutDir != "" {
		if err := c.copyOut(ctx, out); err != nil {
			return nil, false, err
		}
	}
	return leaf, reason != "", nil
}

// copyOut writes the serving object into OutDir when it differs from what
// is there, for a webhook outside the cluster.
func (c *Controller) copyOut(ctx context.Context, out map[string][]byte) error {
	fs := &fileStore{dir: c.cfg.OutDir}
	have, _, err := fs.load(ctx, servingObject)
	if err != nil {
		return err
	}
	if maps.EqualFunc(have, out, bytes.Equal) {
		return nil
	}
	return fs.save(ctx, servingObject, out, nil)
}

func (c *Controller) hasHosts(leaf *x509.Certificate) bool {
	return !slices.ContainsFunc(c.hosts, func(h string) bool { return leaf.VerifyHostname(h) != nil })
}
