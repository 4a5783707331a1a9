package certs

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Trusted reports whether the API server can call the webhook: every
// webhook of the configuration has in its caBundle a CA that signed the
// leaf of the serving object. It is the certificate controller's
// readiness, so `helm install --wait` returns only once pods created after
// it are sent to a webhook the API server trusts; a webhook replica is
// ready as soon as it has a certificate, which on a reinstall over
// leftover Secrets was long before caBundle held their CA. Any replica,
// leader or not, can answer: it reads the cluster, not its own state.
func (c *Controller) Trusted(ctx context.Context) error {
	if c.cfg.WebhookConfigName == "" {
		return nil
	}
	serving, _, err := c.store.load(ctx, servingObject)
	if err != nil {
		return err
	}
	if serving == nil {
		return fmt.Errorf("%s: no serving certificate yet", c.store.name(servingObject))
	}
	leaf, err := ParseCertificate(serving[SecretKeyCert])
	if err != nil {
		return fmt.Errorf("%s: %w", c.store.name(servingObject), err)
	}
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, c.cfg.WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
	if len(mwc.Webhooks) == 0 {
		return fmt.Errorf("mutatingwebhookconfiguration %s has no webhooks", c.cfg.WebhookConfigName)
	}
	now := c.cfg.Now()
	var errs []error
	for _, w := range mwc.Webhooks {
		if signerIn(w.ClientConfig.CABundle, leaf, now) == nil {
			errs = append(errs, fmt.Errorf("webhook %s: caBundle holds no CA of the serving certificate (serial %s)", w.Name, leaf.SerialNumber))
		}
	}
	return errors.Join(errs...)
}
