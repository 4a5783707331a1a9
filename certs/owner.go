package certs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNoWebhookConfig is returned by Reconcile when the webhook configuration
// it keeps does not exist and a certificate object is missing: nothing is
// created then. Run waits for the configuration (its watch wakes it).
var ErrNoWebhookConfig = errors.New("webhook configuration does not exist; missing certificates are not created")

// ownCertificates ties the certificate Secrets to the webhook configuration
// they serve: they are created only while it exists, and they carry it as
// their owner, so Kubernetes' garbage collector deletes them with it.
//
// Why: Helm's pre-delete hook deletes the configuration, then the Secrets,
// while the controller still runs. The controller's Secret watch saw the
// deletions and wrote a new CA and leaf, which outlived the release; a
// reinstall then had webhook replicas ready at once from those leftovers
// while caBundle stayed empty until the new controller got the old
// release's Lease, and pods were admitted unpatched (~12 s on this node).
// Checking for the configuration before creating narrows that race but
// cannot close it (the hook may delete it between the check and the
// create); an owner reference closes it: a Secret created for a
// configuration that is gone names an owner UID that no longer exists,
// and the garbage collector deletes it. `helm uninstall --no-hooks` is
// covered the same way.
//
// Secrets that exist are kept current whatever happens to the
// configuration, so a missing configuration never breaks a running webhook.
func (c *Controller) ownCertificates(ctx context.Context) error {
	s, ok := c.store.(*secretStore)
	if !ok || c.cfg.WebhookConfigName == "" {
		return nil
	}
	s.owner = nil
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, c.cfg.WebhookConfigName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		mwc = nil // the client returns an empty object with the error
	case err != nil:
		c.observeError("cabundle")
		return fmt.Errorf("get mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, err)
	}
	for _, o := range []object{servingObject, caObject} {
		data, version, err := s.load(ctx, o)
		if err != nil {
			c.observeError(map[object]string{servingObject: "serving", caObject: "ca"}[o])
			return err
		}
		switch {
		case mwc == nil && data == nil:
			return fmt.Errorf("mutatingwebhookconfiguration %s: %w", c.cfg.WebhookConfigName, ErrNoWebhookConfig)
		case mwc != nil:
			// Adopt a Secret written before owner references, or for a
			// configuration since re-created.
			if err := s.adopt(ctx, o, version, configOwner(mwc)); err != nil {
				return err
			}
		}
	}
	if mwc != nil {
		s.owner = configOwner(mwc)
	}
	return nil
}

// configOwner is the owner reference to the configuration. Not a
// controller reference and no blockOwnerDeletion: that would need update
// rights on the configuration's finalizers, and deleting the configuration
// must never wait for the Secrets.
func configOwner(mwc *admissionregistrationv1.MutatingWebhookConfiguration) *metav1.OwnerReference {
	return &metav1.OwnerReference{
		APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
		Kind:       "MutatingWebhookConfiguration",
		Name:       mwc.Name,
		UID:        mwc.UID,
	}
}

// setOwner makes owner the Secret's only reference of its kind: a
// reference to an earlier configuration of the same name (deleted and
// re-created) would have the garbage collector delete the Secret.
func setOwner(sec *corev1.Secret, owner *metav1.OwnerReference) (changed bool) {
	if owner == nil {
		return false
	}
	refs := slices.DeleteFunc(slices.Clone(sec.OwnerReferences), func(r metav1.OwnerReference) bool {
		return r.Kind == owner.Kind && r.APIVersion == owner.APIVersion && r.UID != owner.UID
	})
	if !slices.ContainsFunc(refs, func(r metav1.OwnerReference) bool { return r.UID == owner.UID }) {
		refs = append(refs, *owner)
	}
	changed = !slices.EqualFunc(refs, sec.OwnerReferences, func(a, b metav1.OwnerReference) bool { return a.UID == b.UID })
	sec.OwnerReferences = refs
	return changed
}

// adopt gives an existing Secret the owner reference; version is what
// load returned (nil: no Secret, nothing to do).
func (s *secretStore) adopt(ctx context.Context, o object, version any, owner *metav1.OwnerReference) error {
	cur, ok := version.(*corev1.Secret)
	if !ok || cur == nil {
		return nil
	}
	upd := cur.DeepCopy()
	if !setOwner(upd, owner) {
		return nil
	}
	if _, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set owner of secret %s: %w", s.name(o), err)
	}
	return nil
}
