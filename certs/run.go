package certs

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Run reconciles until ctx ends: at once when a watched object changes
// (either Secret, the webhook configuration), when the next renewal or
// propagation wait is due, at least every Resync, and after an error with
// a backoff (1s doubling to Resync, cut short by a change).
func (c *Controller) Run(ctx context.Context) {
	wake := make(chan struct{}, 1)
	c.watch(ctx, func() {
		select {
		case wake <- struct{}{}:
		default: // a reconcile is already pending; it reads everything
		}
	})
	backoff := time.Second
	for {
		wait := c.cfg.Resync
		res, err := c.Reconcile(ctx)
		switch {
		case errors.Is(err, ErrNoWebhookConfig):
			// Not a failure: an install that has not created it yet, or an
			// uninstall under way. Its watch wakes this loop when it comes.
			c.cfg.Logger.Info("waiting for the webhook configuration before creating certificates", "mutatingwebhookconfiguration", c.cfg.WebhookConfigName)
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			c.cfg.Logger.Warn("reconcile failed; retrying", "err", err, "in", backoff.String())
			wait, backoff = backoff, min(2*backoff, c.cfg.Resync)
		default:
			backoff = time.Second
			if d := res.Next.Sub(c.cfg.Now()); d < wait {
				wait = max(d, 100*time.Millisecond)
			}
			c.cfg.Logger.Debug("reconciled", "next", res.Next.UTC().Format(time.RFC3339), "in", wait.String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// watch starts informers on the objects Reconcile writes, waits for their
// first list, and calls changed on every event; they stop with ctx. Each informer is limited to one name
// by a field selector, which lets RBAC grant list and watch by
// resourceNames. Reconcile reads through GET, not from these caches: the
// watches only say when to look. Our own writes come back as events too;
// the reconcile they cause finds nothing to do.
func (c *Controller) watch(ctx context.Context, changed func()) {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}
	byName := func(name string, opts ...informers.SharedInformerOption) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(c.client, 0, append(opts,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))...)
	}
	var started []informers.SharedInformerFactory
	if s, ok := c.store.(*secretStore); ok {
		for _, name := range s.names {
			f := byName(name, informers.WithNamespace(s.namespace))
			if _, err := f.Core().V1().Secrets().Informer().AddEventHandler(h); err != nil {
				c.cfg.Logger.Warn("secret watch not started; changes are seen at the next resync", "secret", name, "err", err)
				continue
			}
			started = append(started, f)
		}
	}
	if c.cfg.WebhookConfigName != "" {
		f := byName(c.cfg.WebhookConfigName)
		if _, err := f.Admissionregistration().V1().MutatingWebhookConfigurations().Informer().AddEventHandler(h); err != nil {
			c.cfg.Logger.Warn("webhook configuration watch not started; changes are seen at the next resync", "err", err)
		} else {
			started = append(started, f)
		}
	}
	// Watching before the first read means no change after it is missed.
	for _, f := range started {
		f.Start(ctx.Done())
	}
	for _, f := range started {
		f.WaitForCacheSync(ctx.Done())
	}
}
