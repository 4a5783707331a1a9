// Package prom registers buildinfo's gauge on a client_golang registry, for
// the binaries that use one (webhook, certificate controller); a package of
// its own so the resolver, which writes its metrics without client_golang,
// does not link it through buildinfo.
package prom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsguard/dnsguard/cmd/buildinfo"
)

// Register adds dnsguard_build_info{component=component,...} 1 to reg.
func Register(reg prometheus.Registerer, component string) {
	names, values := buildinfo.Labels(component)
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: buildinfo.Metric, Help: buildinfo.Help}, names)
	g.WithLabelValues(values...).Set(1)
	reg.MustRegister(g)
}
