package webhook

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WatchServingSecret follows one kubernetes.io/tls Secret through the API
// and offers every version to r. The kubelet refreshes a mounted Secret a
// minute or more after it changes; the watch sees it at once, so a renewed
// or re-signed certificate is served within a second. The files stay the
// fallback (start-up, API outage). The watch is limited to the one name by
// a field selector, which lets RBAC grant get/list/watch by resourceNames.
// It returns once the informer runs; it stops when ctx ends.
func WatchServingSecret(ctx context.Context, client kubernetes.Interface, namespace, name string, r *CertReloader, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))
	offer := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Name != name {
			return
		}
		used, err := r.Offer(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		switch {
		case err != nil:
			log.Warn("serving secret does not hold a usable certificate; keeping the current one", "secret", namespace+"/"+name, "err", err)
			if r.Observe != nil {
				r.Observe(false)
			}
		case used:
			log.Info("TLS certificate taken from the serving secret", "secret", namespace+"/"+name, "notAfter", r.NotAfter())
			if r.Observe != nil {
				r.Observe(true)
			}
		}
	}
	inf := f.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    offer,
		UpdateFunc: func(_, n any) { offer(n) },
	}); err != nil {
		log.Warn("serving secret watch not started; renewals arrive through the mounted files only", "err", err)
		return
	}
	f.Start(ctx.Done())
}
