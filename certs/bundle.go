package certs

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncBundle writes bundle into the caBundle of every webhook of the
// configuration and reports how many changed and whether the configuration
// exists. It is the only writer of caBundle: a value reset by someone else
// (a helm upgrade rendering the configuration with an empty caBundle) is
// written back by the reconcile its watch event causes.
func (c *Controller) syncBundle(ctx context.Context, bundle []byte) (int, bool, error) {
	api := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := api.Get(ctx, c.cfg.WebhookConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.cfg.Logger.Info("webhook configuration does not exist (yet); caBundle not written", "mutatingwebhookconfiguration", c.cfg.WebhookConfigName)
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
	// Update carries the resourceVersion just read: a concurrent edit
	// fails here and is looked at again by the next reconcile.
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return 0, false, fmt.Errorf("update caBundle of mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
	c.cfg.Logger.Info("wrote caBundle", "mutatingwebhookconfiguration", c.cfg.WebhookConfigName, "webhooks", changed)
	return changed, true, nil
}
