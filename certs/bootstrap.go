package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Keys of the TLS Secret. tls.crt and tls.key are what type kubernetes.io/tls
// requires; ca.crt is the conventional key (cert-manager uses it too) so the
// same Secret layout works in every certificates mode. ca.key is kept so a
// later run can renew only the leaf and caBundle stays valid.
const (
	SecretKeyCA    = "ca.crt"
	SecretKeyCAKey = "ca.key"
	SecretKeyCert  = corev1.TLSCertKey
	SecretKeyKey   = corev1.TLSPrivateKeyKey
	caCommonName   = "dnsguard-webhook-ca"
	defaultDomain  = "cluster.local"
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "dnsguard-certs"
)

// DefaultRenewBefore is how long before expiry Bootstrap renews: long enough
// that a monthly upgrade or a failed run still leaves time to notice.
const DefaultRenewBefore = 30 * 24 * time.Hour

// SecretAction says what Bootstrap did to the TLS Secret.
type SecretAction string

// The possible SecretActions.
const (
	// SecretCreated: there was no Secret; a new CA and leaf were created.
	SecretCreated SecretAction = "created"
	// SecretReused: the Secret was valid and was left untouched.
	SecretReused SecretAction = "reused"
	// SecretLeafRenewed: the leaf was re-issued from the existing CA, so
	// the caBundle already in the webhook configuration stays valid.
	SecretLeafRenewed SecretAction = "leaf-renewed"
	// SecretCARotated: the CA itself was replaced (expiring, missing key or
	// unparsable). The old CA, while still valid, stays in ca.crt after the
	// new one so servers still presenting the old leaf are trusted until the
	// kubelet refreshes their mounted Secret.
	SecretCARotated SecretAction = "ca-rotated"
)

// BootstrapConfig configures Bootstrap. Zero values get the defaults noted.
type BootstrapConfig struct {
	// Namespace holds the Secret and the webhook Service.
	Namespace string
	// SecretName is the kubernetes.io/tls Secret to create or reuse.
	SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks
	// get caBundle; empty skips patching (the pre-install hook runs before
	// Helm has created the configuration).
	WebhookConfigName string
	// ServiceName is the webhook Service; its DNS names become SANs. May be
	// empty when ExtraHosts name the server (URL mode).
	ServiceName string
	// ClusterDomain completes the Service FQDN (default cluster.local).
	ClusterDomain string
	// ExtraHosts are further SANs: IPs become IP SANs, the rest DNS SANs.
	ExtraHosts []string
	// RenewBefore renews the leaf (and the CA) when it expires within this
	// window (default 30 days).
	RenewBefore time.Duration
	// Validity is the lifetime of a new serving certificate (default 1 year).
	Validity time.Duration
	// CAValidity is the lifetime of a new CA (default 10 years).
	CAValidity time.Duration
	// OutDir, when set, also receives ca.crt, tls.crt and tls.key for a
	// webhook that runs outside the cluster.
	OutDir string
	// WebhookWait bounds how long to wait for the webhook configuration to
	// appear (default 2 minutes); Backoff paces the attempts.
	WebhookWait time.Duration
	// Backoff paces retries while the webhook configuration does not exist
	// yet. Zero value: 500ms doubling to 10s.
	Backoff wait.Backoff
	// Now is the clock (default time.Now); tests move it forward.
	Now func() time.Time
	// Logger receives progress (default slog.Default()).
	Logger *slog.Logger
}

// BootstrapResult reports what Bootstrap did.
type BootstrapResult struct {
	// Secret is what happened to the TLS Secret.
	Secret SecretAction
	// Reason explains Secret (why a renewal happened).
	Reason string
	// CABundle is the PEM trusted by the API server (ca.crt).
	CABundle []byte
	// WebhooksPatched counts webhooks whose caBundle changed; 0 when all were
	// already current or patching was skipped.
	WebhooksPatched int
	// Hosts are the SANs the serving certificate must carry.
	Hosts []string
}

func (c *BootstrapConfig) setDefaults() error {
	if c.Namespace == "" {
		return errors.New("bootstrap: namespace is required")
	}
	if c.SecretName == "" {
		return errors.New("bootstrap: secret name is required")
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = defaultDomain
	}
	if c.RenewBefore <= 0 {
		c.RenewBefore = DefaultRenewBefore
	}
	if c.Validity <= 0 {
		c.Validity = DefaultServingValidity
	}
	if c.CAValidity <= 0 {
		c.CAValidity = DefaultCAValidity
	}
	if c.RenewBefore >= c.Validity {
		// Otherwise every run would renew a certificate it just issued.
		return fmt.Errorf("bootstrap: renew-before %s must be shorter than validity %s", c.RenewBefore, c.Validity)
	}
	if c.WebhookWait <= 0 {
		c.WebhookWait = 2 * time.Minute
	}
	if c.Backoff.Duration == 0 {
		c.Backoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 20, Cap: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.hosts()) == 0 {
		return errors.New("bootstrap: no service name and no extra hosts: the certificate would name no host")
	}
	return nil
}

// hosts returns the SANs: the Service names, then ExtraHosts, de-duplicated.
func (c *BootstrapConfig) hosts() []string {
	var hs []string
	if c.ServiceName != "" {
		hs = ServiceHosts(c.ServiceName, c.Namespace, c.ClusterDomain)
	}
	for _, h := range c.ExtraHosts {
		if h != "" && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	return hs
}

// Bootstrap makes sure the TLS Secret holds a CA and a serving certificate
// valid for the webhook Service, then writes the CA into caBundle of every
// webhook in the named MutatingWebhookConfiguration. It is idempotent: a run
// against a current Secret and configuration changes nothing. Renewal keeps
// the CA whenever possible so the caBundle the API server holds stays valid
// across upgrades; only an expiring or unusable CA is replaced.
func Bootstrap(ctx context.Context, client kubernetes.Interface, cfg BootstrapConfig) (*BootstrapResult, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	res := &BootstrapResult{Hosts: cfg.hosts()}
	var data map[string][]byte
	// Conflicts happen when two hook runs (or a user) race on the Secret:
	// start over from a fresh read rather than overwrite their result.
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		var err error
		data, err = ensureSecret(ctx, client, &cfg, res)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.CABundle = data[SecretKeyCA]
	if cfg.OutDir != "" {
		if err := writeOutDir(cfg.OutDir, data); err != nil {
			return nil, err
		}
		cfg.Logger.Info("wrote certificates", "dir", cfg.OutDir)
	}
	if cfg.WebhookConfigName == "" {
		cfg.Logger.Info("no webhook configuration named; caBundle not patched")
		return res, nil
	}
	n, err := patchCABundle(ctx, client, &cfg, res.CABundle)
	if err != nil {
		return nil, err
	}
	res.WebhooksPatched = n
	return res, nil
}

// ensureSecret reads the Secret and creates, reuses or renews it. It
// returns the data now stored.
func ensureSecret(ctx context.Context, client kubernetes.Interface, cfg *BootstrapConfig, res *BootstrapResult) (map[string][]byte, error) {
	secrets := client.CoreV1().Secrets(cfg.Namespace)
	log := cfg.Logger.With("secret", cfg.Namespace+"/"+cfg.SecretName)
	cur, err := secrets.Get(ctx, cfg.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		data, err := newSecretData(cfg, nil, res.Hosts)
		if err != nil {
			return nil, err
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      cfg.SecretName,
				Namespace: cfg.Namespace,
				Labels:    map[string]string{managedByLabel: managedByValue},
			},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create secret %s/%s: %w", cfg.Namespace, cfg.SecretName, err)
		}
		res.Secret, res.Reason = SecretCreated, "secret did not exist"
		log.Info("created TLS secret", "hosts", res.Hosts)
		return data, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s/%s: %w", cfg.Namespace, cfg.SecretName, err)
	}
	if cur.Type != corev1.SecretTypeTLS {
		// The type field is immutable; replacing someone else's Secret is
		// not ours to decide.
		return nil, fmt.Errorf("secret %s/%s has type %q, want %q: delete it or choose another name", cfg.Namespace, cfg.SecretName, cur.Type, corev1.SecretTypeTLS)
	}
	action, reason, data, err := renewIfNeeded(cfg, cur.Data, res.Hosts)
	if err != nil {
		return nil, err
	}
	res.Secret, res.Reason = action, reason
	if action == SecretReused {
		log.Info("TLS secret is current", "notAfter", leafNotAfter(cur.Data))
		return cur.Data, nil
	}
	upd := cur.DeepCopy()
	upd.Data = data
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[managedByLabel] = managedByValue
	if _, err := secrets.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("update secret %s/%s: %w", cfg.Namespace, cfg.SecretName, err)
	}
	log.Info("renewed TLS secret", "action", action, "reason", reason)
	return data, nil
}

// renewIfNeeded decides from the stored data whether to keep it, renew the
// leaf from the stored CA, or rotate the CA. It never touches the API.
func renewIfNeeded(cfg *BootstrapConfig, data map[string][]byte, hosts []string) (SecretAction, string, map[string][]byte, error) {
	now := cfg.Now()
	ca, caErr := loadStoredCA(data)
	caUsable := caErr == nil && ca.Cert.NotAfter.After(now.Add(cfg.RenewBefore)) && !now.Before(ca.Cert.NotBefore)
	leafOK := false
	reason := ""
	if caErr == nil {
		if _, err := tlsPairOK(data); err != nil {
			reason = err.Error()
		} else if renew, err := NeedsRenewal(data[SecretKeyCert], hosts, now, cfg.RenewBefore); err != nil {
			reason = err.Error()
		} else if renew {
			reason = "serving certificate expires within renew-before, is not yet valid, or lacks a SAN"
		} else if err := VerifyChain(data[SecretKeyCA], data[SecretKeyCert], hosts[0], now); err != nil {
			reason = "serving certificate does not chain to ca.crt: " + err.Error()
		} else {
			leafOK = true
		}
	}
	switch {
	case caUsable && leafOK:
		return SecretReused, "", data, nil
	case caUsable:
		out, err := newSecretData(cfg, ca, hosts)
		if err != nil {
			return "", "", nil, err
		}
		// Keep any older CA still in the bundle so a previous rotation's
		// overlap is not cut short.
		out[SecretKeyCA] = data[SecretKeyCA]
		return SecretLeafRenewed, reason, out, nil
	default:
		if caErr != nil {
			reason = "CA unusable: " + caErr.Error()
		} else {
			reason = "CA expires within renew-before"
		}
		out, err := newSecretData(cfg, nil, hosts)
		if err != nil {
			return "", "", nil, err
		}
		// Trust the old CA too while it is valid: running webhook pods keep
		// presenting the old leaf until the kubelet refreshes their volume.
		if old, err := ParseCertificate(data[SecretKeyCA]); err == nil && now.Before(old.NotAfter) {
			out[SecretKeyCA] = append(append([]byte{}, out[SecretKeyCA]...), data[SecretKeyCA]...)
		}
		return SecretCARotated, reason, out, nil
	}
}

// newSecretData issues a leaf for hosts from ca, or from a new CA when ca is
// nil, and returns the Secret data.
func newSecretData(cfg *BootstrapConfig, ca *CA, hosts []string) (map[string][]byte, error) {
	if ca == nil {
		var err error
		if ca, err = newCAAt(caCommonName, cfg.CAValidity, cfg.Now()); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := ca.issueServingAt(hosts, cfg.Validity, cfg.Now())
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		SecretKeyCA:    ca.CertPEM,
		SecretKeyCAKey: ca.KeyPEM,
		SecretKeyCert:  certPEM,
		SecretKeyKey:   keyPEM,
	}, nil
}

// loadStoredCA loads the signing CA: the first certificate of ca.crt with
// ca.key.
func loadStoredCA(data map[string][]byte) (*CA, error) {
	if len(data[SecretKeyCA]) == 0 || len(data[SecretKeyCAKey]) == 0 {
		return nil, errors.New("secret lacks ca.crt or ca.key")
	}
	first, err := firstPEMCert(data[SecretKeyCA])
	if err != nil {
		return nil, err
	}
	return LoadCA(first, data[SecretKeyCAKey])
}

func firstPEMCert(bundle []byte) ([]byte, error) {
	for rest := bundle; len(rest) > 0; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			return pem.EncodeToMemory(b), nil
		}
	}
	return nil, errors.New("ca.crt holds no CERTIFICATE block")
}

// tlsPairOK checks that tls.crt and tls.key belong together.
func tlsPairOK(data map[string][]byte) (*x509.Certificate, error) {
	if len(data[SecretKeyCert]) == 0 || len(data[SecretKeyKey]) == 0 {
		return nil, errors.New("secret lacks tls.crt or tls.key")
	}
	c, err := ParseCertificate(data[SecretKeyCert])
	if err != nil {
		return nil, err
	}
	if _, err := tlsKeyPair(data[SecretKeyCert], data[SecretKeyKey]); err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key do not match: %w", err)
	}
	return c, nil
}

func leafNotAfter(data map[string][]byte) string {
	c, err := ParseCertificate(data[SecretKeyCert])
	if err != nil {
		return "unknown"
	}
	return c.NotAfter.UTC().Format(time.RFC3339)
}

// patchCABundle writes bundle into every webhook of the configuration whose
// caBundle differs and returns how many changed. It waits (with backoff up to
// cfg.WebhookWait) for the configuration to exist, because on a first install
// the hook may run before Helm has created it.
func patchCABundle(ctx context.Context, client kubernetes.Interface, cfg *BootstrapConfig, bundle []byte) (int, error) {
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	log := cfg.Logger.With("mutatingwebhookconfiguration", cfg.WebhookConfigName)
	waitCtx, cancel := context.WithTimeout(ctx, cfg.WebhookWait)
	defer cancel()
	var mwc *admissionregistrationv1.MutatingWebhookConfiguration
	var lastErr error
	err := wait.ExponentialBackoffWithContext(waitCtx, cfg.Backoff, func(ctx context.Context) (bool, error) {
		var err error
		mwc, err = api.Get(ctx, cfg.WebhookConfigName, metav1.GetOptions{})
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			log.Info("webhook configuration does not exist yet; retrying")
			lastErr = err
			return false, nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			// Permissions do not fix themselves; fail fast with the reason.
			return false, err
		default:
			log.Warn("get webhook configuration failed; retrying", "err", err)
			lastErr = err
			return false, nil
		}
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last error: %v)", err, lastErr)
		}
		return 0, fmt.Errorf("get mutatingwebhookconfiguration %s: %w", cfg.WebhookConfigName, err)
	}
	changed := 0
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if mwc == nil {
			var err error
			if mwc, err = api.Get(ctx, cfg.WebhookConfigName, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		upd := mwc.DeepCopy()
		mwc = nil // re-read on conflict
		changed = 0
		for i := range upd.Webhooks {
			if !bytes.Equal(upd.Webhooks[i].ClientConfig.CABundle, bundle) {
				upd.Webhooks[i].ClientConfig.CABundle = bundle
				changed++
			}
		}
		if changed == 0 {
			return nil
		}
		_, err := api.Update(ctx, upd, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("update caBundle of mutatingwebhookconfiguration %s: %w", cfg.WebhookConfigName, err)
	}
	if changed == 0 {
		log.Info("caBundle already current")
	} else {
		log.Info("patched caBundle", "webhooks", changed)
	}
	return changed, nil
}

// writeOutDir writes ca.crt, tls.crt and tls.key (0600) atomically.
func writeOutDir(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, f := range []struct {
		key  string
		mode os.FileMode
	}{{SecretKeyCA, 0o644}, {SecretKeyKey, 0o600}, {SecretKeyCert, 0o644}} {
		// Key before certificate: a watcher that reloads on tls.crt then
		// finds the matching key already in place.
		if err := writeAtomic(filepath.Join(dir, f.key), data[f.key], f.mode); err != nil {
			return err
		}
	}
	return nil
}

func tlsKeyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	return tls.X509KeyPair(certPEM, keyPEM)
}
