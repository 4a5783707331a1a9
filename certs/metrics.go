package certs

import "github.com/prometheus/client_golang/prometheus"

// ControllerMetrics are the certificate controller's Prometheus metrics.
// Alert on the expiry gauges, not on renewals: a controller that is down
// renews nothing and says nothing.
type ControllerMetrics struct {
	// ServingExpiry is NotAfter of the serving certificate in the Secret.
	ServingExpiry prometheus.Gauge
	// CAExpiry is NotAfter of the current CA.
	CAExpiry prometheus.Gauge
	// Renewals counts issued serving certificates and CA rotations.
	Renewals *prometheus.CounterVec
	// Errors counts failed reconciles by stage.
	Errors *prometheus.CounterVec
	// LastSuccess is when a reconcile last succeeded.
	LastSuccess prometheus.Gauge
	// Leader is 1 while this process holds the lease.
	Leader prometheus.Gauge
}

// NewControllerMetrics registers the metrics in reg.
func NewControllerMetrics(reg prometheus.Registerer) *ControllerMetrics {
	m := &ControllerMetrics{
		ServingExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "serving_cert_expiry_timestamp_seconds",
			Help: "NotAfter (unix seconds) of the serving certificate in the serving Secret."}),
		CAExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "ca_cert_expiry_timestamp_seconds",
			Help: "NotAfter (unix seconds) of the current CA."}),
		Renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "renewals_total",
			Help: "Serving certificates issued (kind=serving) and CA rotations (kind=ca)."}, []string{"kind"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "reconcile_errors_total",
			Help: "Failed reconciles by stage (ca, cabundle, serving)."}, []string{"stage"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "last_success_timestamp_seconds",
			Help: "When a reconcile last succeeded (unix seconds)."}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dnsguard", Subsystem: "certs", Name: "leader",
			Help: "1 while this process holds the leader lease."}),
	}
	reg.MustRegister(m.ServingExpiry, m.CAExpiry, m.Renewals, m.Errors, m.LastSuccess, m.Leader)
	// Every label value at 0 from the start: a vector without children is
	// absent from /metrics, and rate() of a counter needs its 0 to see the
	// first increment.
	for _, k := range []string{"serving", "ca"} {
		m.Renewals.WithLabelValues(k)
	}
	for _, st := range []string{"ca", "cabundle", "serving"} {
		m.Errors.WithLabelValues(st)
	}
	return m
}
