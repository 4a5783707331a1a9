package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DNSDiscovery finds the cluster DNS address from the ClusterIP of a Service
// (kube-system/kube-dns by default) and looks it up again periodically, so a
// recreated Service is followed. Until the first lookup succeeds Nameservers
// is empty, which keeps /readyz failing. A failed re-check keeps the last
// known address: a temporary API outage must not stop the webhook.
type DNSDiscovery struct {
	client    kubernetes.Interface
	namespace string
	name      string
	interval  time.Duration
	log       *slog.Logger

	mu  sync.RWMutex
	ips []string
}

// NewDNSDiscovery watches service ("namespace/name") through client.
func NewDNSDiscovery(client kubernetes.Interface, service string, interval time.Duration, log *slog.Logger) (*DNSDiscovery, error) {
	ns, name, ok := strings.Cut(service, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("dns service %q: want namespace/name", service)
	}
	if interval <= 0 {
		interval = DefaultRecheck
	}
	if log == nil {
		log = slog.Default()
	}
	return &DNSDiscovery{client: client, namespace: ns, name: name, interval: interval, log: log}, nil
}

// Nameservers returns the discovered addresses (nil until known).
func (d *DNSDiscovery) Nameservers() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.ips
}

// Refresh looks the Service up once.
func (d *DNSDiscovery) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	svc, err := d.client.CoreV1().Services(d.namespace).Get(ctx, d.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get Service %s/%s: %w", d.namespace, d.name, err)
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var valid []string
	for _, ip := range ips {
		if net.ParseIP(ip) != nil {
			valid = append(valid, ip)
		}
	}
	if len(valid) == 0 {
		return fmt.Errorf("service %s/%s has no ClusterIP (headless or not yet allocated: %q)", d.namespace, d.name, svc.Spec.ClusterIP)
	}
	if len(valid) > maxNameservers {
		valid = valid[:maxNameservers]
	}
	d.mu.Lock()
	old := d.ips
	d.ips = valid
	d.mu.Unlock()
	if !slices.Equal(old, valid) {
		d.log.Info("cluster DNS discovered", "service", d.namespace+"/"+d.name, "nameservers", valid, "previous", old)
	}
	return nil
}

// Run refreshes now and then every interval until ctx ends. While nothing
// is known yet it retries faster (every second, up to the interval).
func (d *DNSDiscovery) Run(ctx context.Context) {
	for {
		wait := d.interval
		if err := d.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if len(d.Nameservers()) == 0 {
				d.log.Warn("cluster DNS not discovered yet; not ready", "err", err)
				wait = min(time.Second, d.interval)
			} else {
				d.log.Warn("cluster DNS re-check failed; keeping the last known address", "err", err, "nameservers", d.Nameservers())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
