package webhook

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NameserverSource gives the cluster DNS addresses; empty while unknown.
type NameserverSource interface {
	Nameservers() []string
}

// StaticNameservers is a NameserverSource for configured addresses.
type StaticNameservers []string

// Nameservers returns the configured addresses.
func (s StaticNameservers) Nameservers() []string { return s }

// NamespaceModeSource gives a namespace's default mode annotation ("" when
// none or unknown).
type NamespaceModeSource interface {
	DefaultMode(namespace string) string
}

// Options are a Server's collaborators; zero values get sensible defaults.
type Options struct {
	// Logger for requests and decisions; slog.Default() when nil.
	Logger *slog.Logger
	// Registry receives the metrics and is served on /metrics; a fresh
	// registry when nil.
	Registry *prometheus.Registry
	// Nameservers are the cluster DNS addresses; cfg.Nameservers when nil.
	Nameservers NameserverSource
	// Namespaces give per-namespace default modes; none when nil.
	Namespaces NamespaceModeSource
	// NativeSidecars says whether native sidecars may be injected; when
	// nil, cfg.NativeSidecars decides (auto without a source counts them as
	// unknown, so sidecar mode gives dnsconfig mode).
	NativeSidecars NativeSidecarSource
}

// Server is the webhook's HTTP handler: /mutate, /explain, /healthz,
// /readyz and /metrics; with cfg.MetricsListen set, /metrics and /explain
// move to OpsHandler. TLS is the caller's (see CertReloader and Run).
type Server struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *Metrics
	ns       NameserverSource
	nsModes  NamespaceModeSource
	native   NativeSidecarSource
	mux      *http.ServeMux
	opsMux   *http.ServeMux // nil unless cfg.MetricsListen is set
	budget   *byteBudget
	// mutateDuration is Duration's /mutate child, resolved once.
	mutateDuration prometheus.Observer
}

// NewServer builds a Server for a validated cfg.
func NewServer(cfg Config, opts Options) *Server {
	cfg.Normalize()
	s := &Server{cfg: cfg, log: opts.Logger, registry: opts.Registry, ns: opts.Nameservers, nsModes: opts.Namespaces}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	if s.ns == nil {
		s.ns = StaticNameservers(cfg.Nameservers)
	}
	s.native = opts.NativeSidecars
	if s.native == nil {
		s.native = StaticNativeSidecars(staticNativeSidecars(cfg.NativeSidecars))
	}
	budget := cfg.RequestBudgetBytes
	if budget <= 0 {
		budget = DefaultRequestBudgetBytes
	}
	s.budget = newByteBudget(budget)
	s.metrics = NewMetrics(s.registry, func() float64 {
		if len(s.ns.Nameservers()) > 0 {
			return 1
		}
		return 0
	})
	s.mutateDuration = s.metrics.Duration.WithLabelValues("mutate")
	s.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dnsguard_webhook_native_sidecars",
		Help: "1 when sidecar mode may inject native sidecars (--native-sidecars, detected from the API server with auto), else 0: sidecar-mode pods then get dnsconfig mode.",
	}, func() float64 {
		if s.native.NativeSidecarsUnavailable() == "" {
			return 1
		}
		return 0
	}))
	s.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dnsguard_webhook_request_budget_used_bytes",
		Help: "Bytes of the request body budget charged by requests in flight (see requestBudgetBytes).",
	}, func() float64 { return float64(s.budget.inUse()) }))
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/mutate", s.serveMutate)
	s.mux.HandleFunc("/healthz", s.serveHealthz)
	s.mux.HandleFunc("/readyz", s.serveReadyz)
	// With a separate operations listener, the port tenants can reach
	// serves admission and probes only, so a NetworkPolicy can open it to
	// everyone and the metrics port to the monitoring namespaces alone.
	ops := s.mux
	if cfg.MetricsListen != "" {
		s.opsMux = http.NewServeMux()
		s.opsMux.HandleFunc("/healthz", s.serveHealthz)
		s.opsMux.HandleFunc("/readyz", s.serveReadyz)
		ops = s.opsMux
	}
	ops.HandleFunc("/explain", s.serveExplain)
	ops.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	return s
}

// Metrics returns the server's metrics (for wiring the certificate reloader).
func (s *Server) Metrics() *Metrics { return s.metrics }

// OpsHandler serves /metrics, /explain, /healthz and /readyz for the
// separate plain-HTTP listener (cfg.MetricsListen); nil when that is not
// configured and the main handler serves them.
func (s *Server) OpsHandler() http.Handler {
	if s.opsMux == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverHandler(w, r)
		s.opsMux.ServeHTTP(w, r)
	})
}

// ServeHTTP recovers from panics in any handler so one bad request never
// takes the process down; /mutate handles its own panics to still answer
// with an AdmissionReview.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverHandler(w, r)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) recoverHandler(w http.ResponseWriter, r *http.Request) {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		s.metrics.Panics.Inc()
		s.log.Error("panic in handler", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
		s.httpError(w, http.StatusInternalServerError, "internal error")
	}
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// serveReadyz fails until the cluster DNS address is known (before that the
// webhook could only leave pods alone) and, with namespace defaults on, until
// the namespace informer has synced (before that a namespace's default-mode
// annotation would be ignored and the flag default applied).
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	if len(s.ns.Nameservers()) == 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: cluster DNS nameservers not known yet (looking up Service %s)\n", s.cfg.DNSService)
		return
	}
	if !namespacesSynced(s.nsModes) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: namespace informer not synced yet (namespace default modes unknown)")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
