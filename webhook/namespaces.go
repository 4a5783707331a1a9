package webhook

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// NamespaceModes reads the dnsguard.io/default-mode annotation of
// namespaces from a shared informer cache, so an admission never waits on
// the API server. Until the cache has synced (or when it cannot), it answers
// "" and the configured default applies.
type NamespaceModes struct {
	factory informers.SharedInformerFactory
	lister  corelisters.NamespaceLister
	synced  cache.InformerSynced
	log     *slog.Logger
}

// NewNamespaceModes prepares the informer; Start runs it.
func NewNamespaceModes(client kubernetes.Interface, resync time.Duration, log *slog.Logger) *NamespaceModes {
	if log == nil {
		log = slog.Default()
	}
	f := informers.NewSharedInformerFactory(client, resync)
	inf := f.Core().V1().Namespaces()
	return &NamespaceModes{factory: f, lister: inf.Lister(), synced: inf.Informer().HasSynced, log: log}
}

// Start runs the informer until ctx ends and waits (bounded by ctx) for the
// first sync; it reports whether the cache synced.
func (n *NamespaceModes) Start(ctx context.Context) bool {
	n.factory.Start(ctx.Done())
	ok := cache.WaitForCacheSync(ctx.Done(), n.synced)
	if ok {
		n.log.Info("namespace informer synced")
	}
	return ok
}

// Synced reports whether the informer cache has synced; /readyz waits for
// it, so no admission is answered with the flag default while a namespace's
// annotation is merely not loaded yet.
func (n *NamespaceModes) Synced() bool { return n != nil && n.synced() }

// namespacesSynced is true unless src is a cache that has not synced yet.
func namespacesSynced(src NamespaceModeSource) bool {
	s, ok := src.(interface{ Synced() bool })
	return !ok || s.Synced()
}

// DefaultMode returns the namespace's default-mode annotation, or "".
func (n *NamespaceModes) DefaultMode(namespace string) string {
	if n == nil || !n.synced() {
		return ""
	}
	ns, err := n.lister.Get(namespace)
	if err != nil {
		return ""
	}
	return ns.Annotations[AnnotationNamespaceDefaultMode]
}
