package webhook

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Review results (label "result" of dnsguard_webhook_reviews_total).
const (
	ResultPatched = "patched"
	ResultSkipped = "skipped"
	ResultError   = "error"
)

// Metrics are the webhook's Prometheus metrics. They live on a registry
// owned by the caller so tests can run several servers in one process.
type Metrics struct {
	// Reviews counts admission reviews by result and mode.
	Reviews *prometheus.CounterVec
	// Duration observes the handling time of /mutate and /explain.
	Duration *prometheus.HistogramVec
	// PatchErrors counts pods allowed unpatched because the patch failed.
	PatchErrors prometheus.Counter
	// Skips counts pods left alone, by reason.
	Skips *prometheus.CounterVec
	// Warnings counts admission warnings returned.
	Warnings prometheus.Counter
	// HTTPErrors counts requests refused before admission, by status code.
	HTTPErrors *prometheus.CounterVec
	// Shed counts requests refused with 429 because the byte budget was spent.
	Shed prometheus.Counter
	// Panics counts recovered panics.
	Panics prometheus.Counter
	// CertReloads counts certificate reloads by result (ok, error).
	CertReloads *prometheus.CounterVec
	// SidecarFallbacks counts pods that asked for sidecar mode and got
	// dnsconfig mode, by reason.
	SidecarFallbacks *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg; nameserversKnown
// backs the dnsguard_webhook_nameservers_known gauge (1 known, 0 not yet).
func NewMetrics(reg prometheus.Registerer, nameserversKnown func() float64) *Metrics {
	m := &Metrics{
		Reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsguard_webhook_reviews_total",
			Help: "Admission reviews answered, by result (patched, skipped, error) and mode (dnsconfig, sidecar, off).",
		}, []string{"result", "mode"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dnsguard_webhook_request_duration_seconds",
			Help: "Time to answer /mutate and /explain requests.",
			// Admission sits on the pod creation path: resolution below 1 ms
			// matters, anything above 1 s is already a problem.
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"endpoint"}),
		PatchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsguard_webhook_patch_errors_total",
			Help: "Pods allowed without a patch because building the patch failed.",
		}),
		Skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsguard_webhook_skips_total",
			Help: "Pods left unchanged, by reason.",
		}, []string{"reason"}),
		Warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsguard_webhook_warnings_total",
			Help: "Admission warnings returned to clients.",
		}),
		HTTPErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsguard_webhook_http_errors_total",
			Help: "Requests refused with an HTTP error, by status code.",
		}, []string{"code"}),
		Shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsguard_webhook_shed_requests_total",
			Help: "Requests refused with 429 because the request byte budget was spent (the API server retries them).",
		}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsguard_webhook_panics_total",
			Help: "Panics recovered while handling a request (the pod was allowed unchanged).",
		}),
		CertReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsguard_webhook_cert_reloads_total",
			Help: "Serving certificate reloads from disk, by result (ok, error).",
		}, []string{"result"}),
		SidecarFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsguard_webhook_sidecar_fallbacks_total",
			Help: "Pods that asked for sidecar mode and were patched in dnsconfig mode instead, by reason (native-sidecars-unavailable, host-network, name-taken, port-53, sysctl, health-port).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Reviews, m.Duration, m.PatchErrors, m.Skips, m.Warnings,
		m.HTTPErrors, m.Shed, m.Panics, m.CertReloads, m.SidecarFallbacks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dnsguard_webhook_nameservers_known",
			Help: "1 when the cluster DNS nameservers are known (configured or discovered), else 0.",
		}, nameserversKnown))
	m.initChildren()
	return m
}

// httpErrorCodes are the statuses httpError can count (body.go, budget,
// recovered panics).
var httpErrorCodes = []int{
	http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType, http.StatusTooManyRequests, http.StatusInternalServerError,
}

// skipReasons are every reason counted by dnsguard_webhook_skips_total.
var skipReasons = []string{
	SkipAlreadyInjected, SkipMirrorPod, SkipModeOff, SkipWindows, SkipDNSPolicyDefault, SkipDNSPolicyNone,
	SkipDNSPolicyUnknown, SkipHostNetwork, SkipNoNamespace, SkipNoNameservers, SkipUndecodable,
	SkipNotPodCreate, SkipInternalError,
}

// initChildren creates every label combination the webhook can count, at 0:
// a vector without children is absent from /metrics, so the alerts'
// rate(...{result="error"}) would have no series until the first error and
// a ratio would start from nothing instead of from 0. The chart test
// (test/chart, TestQueriedMetricsExported) relies on these being present
// in the real binary's /metrics.
func (m *Metrics) initChildren() {
	for _, mode := range []string{ModeDNSConfig, ModeSidecar} {
		m.Reviews.WithLabelValues(ResultPatched, mode)
	}
	for _, mode := range []string{ModeOff, ModeDNSConfig, ModeSidecar} {
		m.Reviews.WithLabelValues(ResultError, mode)
	}
	m.Reviews.WithLabelValues(ResultSkipped, ModeOff)
	for _, r := range skipReasons {
		m.Skips.WithLabelValues(r)
	}
	for _, c := range httpErrorCodes {
		m.HTTPErrors.WithLabelValues(strconv.Itoa(c))
	}
	for _, e := range []string{"mutate", "explain"} {
		m.Duration.WithLabelValues(e)
	}
	for _, r := range []string{"ok", "error"} {
		m.CertReloads.WithLabelValues(r)
	}
	for _, r := range fallbackReasons {
		m.SidecarFallbacks.WithLabelValues(r)
	}
}
