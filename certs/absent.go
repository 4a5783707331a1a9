package certs

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNoWebhookConfig is returned by Reconcile when the webhook configuration
// it keeps does not exist and a certificate object is missing: nothing is
// created then. Run waits for the configuration (its watch wakes it).
var ErrNoWebhookConfig = errors.New("webhook configuration does not exist; missing certificates are not created")

// requireConfigToCreate refuses to create certificate objects while the
// webhook configuration they serve is absent. Helm's pre-delete hook deletes
// the configuration, then the Secrets, while the controller still runs: the
// controller's Secret watch saw the deletions and wrote a new CA and leaf,
// which outlived the release. A reinstall then started webhook replicas at
// once from those leftovers, ready before any caBundle was written (the new
// controller waits for the old, unreleased Lease), and pods created in the
// seconds after `helm install --wait` were admitted unpatched. Objects that
// exist are still kept current, so an absent configuration never breaks a
// running webhook.
func (c *Controller) requireConfigToCreate(ctx context.Context, serving map[string][]byte) error {
	if c.cfg.WebhookConfigName == "" {
		return nil
	}
	ca, _, err := c.store.load(ctx, caObject)
	if err != nil {
		c.observeError("ca")
		return err
	}
	if ca != nil && serving != nil {
		return nil
	}
	_, err = c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, c.cfg.WebhookConfigName, metav1.GetOptions{})
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, ErrNoWebhookConfig)
	default:
		c.observeError("cabundle")
		return fmt.Errorf("get mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
}
