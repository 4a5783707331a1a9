package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
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
}

// Server is the webhook's HTTP handler: /mutate, /explain, /healthz,
// /readyz and /metrics. TLS is the caller's (see CertReloader and Run).
type Server struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *Metrics
	ns       NameserverSource
	nsModes  NamespaceModeSource
	mux      *http.ServeMux
}

// NewServer builds a Server for a validated cfg.
func NewServer(cfg Config, opts Options) *Server {
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
	s.metrics = NewMetrics(s.registry, func() float64 {
		if len(s.ns.Nameservers()) > 0 {
			return 1
		}
		return 0
	})
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/mutate", s.serveMutate)
	s.mux.HandleFunc("/explain", s.serveExplain)
	s.mux.HandleFunc("/healthz", s.serveHealthz)
	s.mux.HandleFunc("/readyz", s.serveReadyz)
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	return s
}

// Metrics returns the server's metrics (for wiring the certificate reloader).
func (s *Server) Metrics() *Metrics { return s.metrics }

// ServeHTTP recovers from panics in any handler so one bad request never
// takes the process down; /mutate handles its own panics to still answer
// with an AdmissionReview.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.metrics.Panics.Inc()
			s.log.Error("panic in handler", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			s.httpError(w, http.StatusInternalServerError, "internal error")
		}
	}()
	s.mux.ServeHTTP(w, r)
}

func (s *Server) httpError(w http.ResponseWriter, code int, format string, args ...any) {
	s.metrics.HTTPErrors.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), fmt.Sprintf(format, args...))
}

// readJSONBody enforces POST, a JSON Content-Type and the size limit, and
// returns the body; on failure it has already answered.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.httpError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s; use POST", r.Method, r.URL.Path)
		return nil, false
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		s.httpError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
		return nil, false
	}
	limit := s.cfg.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	if r.ContentLength > limit {
		s.httpError(w, http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.httpError(w, http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes", limit)
		} else {
			s.httpError(w, http.StatusBadRequest, "reading body: %v", err)
		}
		return nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.httpError(w, http.StatusBadRequest, "empty body; expected JSON")
		return nil, false
	}
	return body, true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing useful to do
}

const admissionV1 = "admission.k8s.io/v1"

func (s *Server) serveMutate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.metrics.Duration.WithLabelValues("mutate").Observe(time.Since(start).Seconds()) }()
	body, ok := s.readJSONBody(w, r)
	if !ok {
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		s.httpError(w, http.StatusBadRequest, "malformed AdmissionReview: %v", err)
		return
	}
	if (review.APIVersion != "" && review.APIVersion != admissionV1) || (review.Kind != "" && review.Kind != "AdmissionReview") {
		s.httpError(w, http.StatusBadRequest, "expected apiVersion %s kind AdmissionReview, got apiVersion %q kind %q (configure admissionReviewVersions: [v1])", admissionV1, review.APIVersion, review.Kind)
		return
	}
	if review.Request == nil {
		s.httpError(w, http.StatusBadRequest, "AdmissionReview has no request")
		return
	}
	resp := s.admit(r.Context(), review.Request)
	writeJSON(w, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionV1, Kind: "AdmissionReview"},
		Response: resp,
	})
}

// admit answers one AdmissionRequest. It never denies: every failure path
// allows the pod unchanged with a warning, because DNS tuning must not block
// pod creation.
func (s *Server) admit(ctx context.Context, req *admissionv1.AdmissionRequest) (resp *admissionv1.AdmissionResponse) {
	log := s.log.With("uid", req.UID, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation)
	defer func() {
		if p := recover(); p != nil {
			s.metrics.Panics.Inc()
			s.metrics.Reviews.WithLabelValues(ResultError, ModeOff).Inc()
			s.metrics.Skips.WithLabelValues(SkipInternalError).Inc()
			log.Error("panic while admitting; pod allowed unchanged", "panic", p, "stack", string(debug.Stack()))
			resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true,
				Warnings: []string{warningPrefix + "internal error; pod left unchanged"}}
		}
	}()
	resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if !isPodCreate(req) {
		s.metrics.Reviews.WithLabelValues(ResultSkipped, ModeOff).Inc()
		s.metrics.Skips.WithLabelValues(SkipNotPodCreate).Inc()
		log.Debug("not a pod creation; allowed", "kind", req.Kind.Kind, "resource", req.Resource.Resource, "subResource", req.SubResource)
		return resp
	}
	ev := s.evaluate(req.Object.Raw, req.Namespace)
	resp.Warnings = ev.decision.Warnings
	s.metrics.Warnings.Add(float64(len(resp.Warnings)))
	log = log.With("pod", podName(ev.pod), "mode", ev.decision.Mode)
	switch {
	case ev.decodeErr != nil:
		s.metrics.Reviews.WithLabelValues(ResultError, ModeOff).Inc()
		s.metrics.Skips.WithLabelValues(SkipUndecodable).Inc()
		log.Warn("pod not decodable; allowed unchanged", "err", ev.decodeErr)
	case ev.patchErr != nil:
		s.metrics.PatchErrors.Inc()
		s.metrics.Reviews.WithLabelValues(ResultError, ev.decision.Mode).Inc()
		log.Error("building the patch failed; pod allowed unchanged", "err", ev.patchErr)
	case !ev.decision.Mutates():
		s.metrics.Reviews.WithLabelValues(ResultSkipped, ModeOff).Inc()
		s.metrics.Skips.WithLabelValues(ev.decision.Skip).Inc()
		log.Info("pod left unchanged", "skip", ev.decision.Skip, "reason", ev.decision.Reason, "warnings", len(resp.Warnings))
	default:
		patch, err := json.Marshal(ev.ops)
		if err != nil { // cannot happen for these types; stay safe anyway
			s.metrics.PatchErrors.Inc()
			s.metrics.Reviews.WithLabelValues(ResultError, ev.decision.Mode).Inc()
			resp.Warnings = append(resp.Warnings, warningPrefix+"internal error encoding the patch; pod left unchanged")
			return resp
		}
		if len(ev.ops) > 0 {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
		s.metrics.Reviews.WithLabelValues(ResultPatched, ev.decision.Mode).Inc()
		log.Info("pod patched", "reason", ev.decision.Reason, "operations", len(ev.ops), "warnings", len(resp.Warnings))
	}
	return resp
}

func isPodCreate(req *admissionv1.AdmissionRequest) bool {
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return false
	}
	isPod := req.Kind.Group == "" && req.Kind.Kind == "Pod"
	isPods := req.Resource.Group == "" && req.Resource.Resource == "pods"
	if req.Resource.Resource == "" {
		return isPod
	}
	if req.Kind.Kind == "" {
		return isPods
	}
	return isPod && isPods
}

func podName(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}

// evaluation is the outcome of deciding on one raw pod.
type evaluation struct {
	pod       *corev1.Pod
	namespace string
	decision  Decision
	ops       []jsonpatch.Operation
	decodeErr error
	patchErr  error
}

// evaluate decodes raw, decides and builds the patch; shared by /mutate and
// /explain so both always agree.
func (s *Server) evaluate(raw []byte, namespace string) evaluation {
	var ev evaluation
	var pod corev1.Pod
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		ev.decodeErr = errors.New("the request has no object")
	} else if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
		// Case-sensitive like the API server: encoding/json would read
		// "Spec" as spec, and the patch (written to "spec") would then
		// disagree with what the API server stores.
		ev.decodeErr = err
	} else if pod.Kind != "" && pod.Kind != "Pod" {
		ev.decodeErr = fmt.Errorf("object kind is %q, not Pod", pod.Kind)
	}
	if ev.decodeErr != nil {
		ev.decision = Decision{Mode: ModeOff, Skip: SkipUndecodable, Reason: "the pod could not be decoded: " + ev.decodeErr.Error()}
		ev.decision.warnf("pod left unchanged: could not decode it (%v)", ev.decodeErr)
		return ev
	}
	ev.pod = &pod
	ev.namespace = pod.Namespace
	if ev.namespace == "" {
		ev.namespace = namespace
	}
	env := Env{Namespace: ev.namespace, Nameservers: s.ns.Nameservers()}
	if s.nsModes != nil && ev.namespace != "" {
		env.NamespaceDefaultMode = s.nsModes.DefaultMode(ev.namespace)
		if na, ok := s.nsModes.(NamespaceAnnotationSource); ok {
			env.NamespaceAnnotations = na.Annotations(ev.namespace)
		}
	}
	ev.decision = Decide(&pod, env, &s.cfg)
	ev.ops, ev.patchErr = buildPatch(raw, ev.decision)
	if ev.patchErr != nil {
		ev.decision.warnf("pod left unchanged: building the patch failed (%v)", ev.patchErr)
	}
	return ev
}

// ExplainResponse is the /explain answer.
type ExplainResponse struct {
	// Mode is dnsconfig, sidecar or off.
	Mode string `json:"mode"`
	// Reason says why.
	Reason string `json:"reason"`
	// Skip is the skip reason when the pod is left alone.
	Skip string `json:"skip,omitempty"`
	// Namespace used for the search path.
	Namespace string `json:"namespace,omitempty"`
	// Patch is the JSONPatch /mutate would return (empty when none).
	Patch []jsonpatch.Operation `json:"patch"`
	// Warnings are the admission warnings /mutate would return.
	Warnings []string `json:"warnings"`
	// ResolvConf is the resolv.conf the pod will get.
	ResolvConf string `json:"resolvConf"`
	// Before is the resolv.conf the pod would get without dnsguard (the
	// kubelet's rendering of its dnsPolicy); what the webhook cannot know,
	// like the node's search domains, is said in comment lines.
	Before string `json:"before"`
}

// serveExplain shows, without side effects or metrics of admissions, what
// /mutate would do to a pod. The body is a Pod, or for convenience an
// AdmissionReview whose request object is used.
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.metrics.Duration.WithLabelValues("explain").Observe(time.Since(start).Seconds()) }()
	body, ok := s.readJSONBody(w, r)
	if !ok {
		return
	}
	var head struct {
		Kind    string                        `json:"kind"`
		Request *admissionv1.AdmissionRequest `json:"request"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		s.httpError(w, http.StatusBadRequest, "malformed JSON: %v", err)
		return
	}
	raw, namespace := body, r.URL.Query().Get("namespace")
	if head.Kind == "AdmissionReview" {
		if head.Request == nil {
			s.httpError(w, http.StatusBadRequest, "AdmissionReview has no request")
			return
		}
		raw = head.Request.Object.Raw
		if namespace == "" {
			namespace = head.Request.Namespace
		}
	}
	var extra []string
	var probe struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &probe)
	if probe.Metadata.Namespace == "" && namespace == "" {
		namespace = "default"
		extra = append(extra, warningPrefix+`the pod has no namespace and none was given (?namespace=NS); assuming "default"`)
	}
	ev := s.evaluate(raw, namespace)
	if ev.decodeErr != nil {
		s.httpError(w, http.StatusBadRequest, "body is not a Pod: %v", ev.decodeErr)
		return
	}
	out := ExplainResponse{
		Mode:      ev.decision.Mode,
		Reason:    ev.decision.Reason,
		Skip:      ev.decision.Skip,
		Namespace: ev.namespace,
		Patch:     ev.ops,
		Warnings:  append(extra, ev.decision.Warnings...),
	}
	if out.Patch == nil {
		out.Patch = []jsonpatch.Operation{}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	out.Before = EffectiveResolvConf(ev.pod, ev.namespace, s.ns.Nameservers(), &s.cfg)
	if ev.decision.Mutates() && ev.patchErr == nil {
		out.ResolvConf = RenderResolvConf(ev.decision.DNSConfig)
	} else {
		out.ResolvConf = out.Before
	}
	writeJSON(w, out)
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// serveReadyz fails until the cluster DNS address is known: before that the
// webhook could only leave pods alone.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	if len(s.ns.Nameservers()) == 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: cluster DNS nameservers not known yet (looking up Service %s)\n", s.cfg.DNSService)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
