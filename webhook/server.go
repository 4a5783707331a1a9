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
	"os"
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
// /readyz and /metrics; with cfg.MetricsListen set, /metrics and /explain
// move to OpsHandler. TLS is the caller's (see CertReloader and Run).
type Server struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *Metrics
	ns       NameserverSource
	nsModes  NamespaceModeSource
	mux      *http.ServeMux
	opsMux   *http.ServeMux // nil unless cfg.MetricsListen is set
	budget   *byteBudget
	// mutateDuration is Duration's /mutate child, resolved once.
	mutateDuration prometheus.Observer
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

func (s *Server) httpError(w http.ResponseWriter, code int, format string, args ...any) {
	s.metrics.HTTPErrors.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), fmt.Sprintf(format, args...))
	// Most errors answer before the request body is read. Over HTTP/2 the
	// server then resets the stream when the handler returns, and its
	// write scheduler sends that RST_STREAM ahead of a response still
	// buffered: the client gets the status but not the message (curl:
	// "transfer closed with 88 bytes remaining"). Flushing waits until the
	// message is on the wire.
	_ = http.NewResponseController(w).Flush()
}

// readJSONBody enforces POST, a JSON Content-Type, the size limit and the
// byte budget, and returns the body with the budget it holds (release it
// when done with the body); on failure it has already answered.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, int64, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.httpError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s; use POST", r.Method, r.URL.Path)
		return nil, 0, false
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		s.httpError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
		return nil, 0, false
	}
	limit := s.maxBody()
	if r.ContentLength > limit {
		s.httpError(w, http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
		return nil, 0, false
	}
	// A declared size that cannot fit now is shed before a byte is read:
	// reading (and decrypting) a body only to refuse it would spend the CPU
	// that ordinary reviews and probes need.
	if r.ContentLength > firstBodyChunk && !s.budget.fits((r.ContentLength+1+firstBodyChunk)*bodyCostFactor) {
		s.shed(w)
		return nil, 0, false
	}
	// A body that trickles in holds its connection and its budget; bound
	// the whole read, whatever the server-wide timeouts are.
	if t := s.cfg.BodyReadTimeout; t > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(t))
	}
	body, charged, err := s.readBudgeted(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	if err != nil {
		s.budget.release(charged)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			s.httpError(w, http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes", limit)
		case errors.Is(err, errOverBudget):
			s.shed(w)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			s.httpError(w, http.StatusRequestTimeout, "body not received within %s", s.cfg.BodyReadTimeout)
		default:
			s.httpError(w, http.StatusBadRequest, "reading body: %v", err)
		}
		return nil, 0, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.budget.release(charged)
		s.httpError(w, http.StatusBadRequest, "empty body; expected JSON")
		return nil, 0, false
	}
	return body, charged, true
}

func (s *Server) maxBody() int64 {
	if s.cfg.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return s.cfg.MaxRequestBytes
}

// shed answers 429: the API server retries after Retry-After (and
// otherwise applies the webhook's failurePolicy). The connection is closed
// so the server does not read the rest of the body to reuse it.
func (s *Server) shed(w http.ResponseWriter) {
	s.metrics.Shed.Inc()
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	s.httpError(w, http.StatusTooManyRequests, "too many request bytes in flight (budget %d bytes); retry later", s.budget.total)
}

var errOverBudget = errors.New("request byte budget exhausted")

// firstBodyChunk is the buffer a body is first read into: a whole ordinary
// review, while a stalled client that sent headers only pins nothing.
const firstBodyChunk = 32 << 10

// readBudgeted reads body, charging the byte budget before each buffer is
// allocated, so the memory pinned by bodies (complete or still trickling
// in) never exceeds the budget. It returns the bytes charged, also on error.
func (s *Server) readBudgeted(body io.Reader, contentLength int64) ([]byte, int64, error) {
	var charged int64
	grow := func(buf []byte, size int64) ([]byte, error) {
		// The old buffer stays charged: it is garbage, but it is memory
		// until the next collection.
		if !s.budget.acquire(size * bodyCostFactor) {
			return buf, errOverBudget
		}
		charged += size * bodyCostFactor
		nb := make([]byte, len(buf), size)
		copy(nb, buf)
		return nb, nil
	}
	size := int64(firstBodyChunk)
	if contentLength >= 0 && contentLength < size {
		size = contentLength + 1 // room to see EOF without growing
	}
	buf, err := grow(nil, size)
	if err != nil {
		return nil, charged, err
	}
	for {
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, charged, nil
		}
		if err != nil {
			return nil, charged, err
		}
		if len(buf) < cap(buf) {
			continue
		}
		if contentLength >= 0 && int64(len(buf)) == contentLength {
			continue // complete; the next read returns EOF
		}
		next := int64(cap(buf)) * 2
		if contentLength > int64(cap(buf)) {
			next = contentLength + 1 // the size is declared: one allocation
		}
		if next > s.maxBody()+1 {
			next = s.maxBody() + 1 // MaxBytesReader fails beyond that
		}
		if buf, err = grow(buf, next); err != nil {
			return nil, charged, err
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing useful to do
}

const admissionV1 = "admission.k8s.io/v1"

func (s *Server) serveMutate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.mutateDuration.Observe(time.Since(start).Seconds()) }()
	body, charged, ok := s.readJSONBody(w, r)
	if !ok {
		return
	}
	defer s.budget.release(charged)
	// Here, not before the body is read: stalled and shed requests keep
	// their small stacks.
	growStack()
	var review reviewIn
	pending, err := decodeReview(body, &review)
	if err == nil && pending && !s.podDecodeChecks(&review) {
		if objectIsJSON(review.Request.Object) {
			pending = false
		} else {
			err = malformedReview(body)
		}
	}
	if err != nil {
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
	resp := s.admit(r.Context(), review.Request.admissionRequest(), pending)
	if resp == nil {
		s.httpError(w, http.StatusBadRequest, "malformed AdmissionReview: %v", malformedReview(body))
		return
	}
	if resp.Result != nil || len(resp.AuditAnnotations) > 0 {
		// Fields the hand encoder does not write: the generic encoder.
		writeJSON(w, admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionV1, Kind: "AdmissionReview"},
			Response: resp,
		})
		return
	}
	out := appendReview(make([]byte, 0, 256+len(resp.Patch)*4/3), resp)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out) // the client went away; nothing useful to do
}

// podDecodeChecks reports whether admit will decode the review's pending
// pod bytes (see decodeReview) before it answers, so that it, not the
// caller, finds out whether they are JSON: a well-formed pod creation.
func (s *Server) podDecodeChecks(review *reviewIn) bool {
	if (review.APIVersion != "" && review.APIVersion != admissionV1) || (review.Kind != "" && review.Kind != "AdmissionReview") || review.Request == nil {
		return false
	}
	return isPodCreate(review.Request.admissionRequest())
}

// admit answers one AdmissionRequest. It never denies: every failure path
// allows the pod unchanged with a warning, because DNS tuning must not block
// pod creation. With objectPending (see decodeReview) the request object
// has not been checked to be JSON: admit then returns nil, before any
// metric or log, when it is not, and the caller answers the review as
// malformed.
func (s *Server) admit(ctx context.Context, req *admissionv1.AdmissionRequest, objectPending bool) (resp *admissionv1.AdmissionResponse) {
	log := s.log.With("uid", req.UID, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation)
	defer func() {
		if p := recover(); p != nil {
			if objectPending && !objectIsJSON(req.Object.Raw) {
				resp = nil
				return
			}
			s.metrics.Panics.Inc()
			s.metrics.Reviews.WithLabelValues(ResultError, ModeOff).Inc()
			s.metrics.Skips.WithLabelValues(SkipInternalError).Inc()
			log.Error("panic while admitting; pod allowed unchanged", "panic", p, "stack", string(debug.Stack()))
			resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true,
				Warnings: []string{warningPrefix + "internal error; pod left unchanged"}}
		}
	}()
	if objectPending && !isPodCreate(req) && !objectIsJSON(req.Object.Raw) {
		return nil
	}
	resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if !isPodCreate(req) {
		s.metrics.Reviews.WithLabelValues(ResultSkipped, ModeOff).Inc()
		s.metrics.Skips.WithLabelValues(SkipNotPodCreate).Inc()
		log.Debug("not a pod creation; allowed", "kind", req.Kind.Kind, "resource", req.Resource.Resource, "subResource", req.SubResource)
		return resp
	}
	ev := s.evaluate(req.Object.Raw, req.Namespace)
	if objectPending && ev.decodeErr != nil && !objectIsJSON(req.Object.Raw) {
		return nil
	}
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
		patch, err := appendPatch(nil, ev.ops)
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
	ev.ops, ev.patchErr = fastPatch(raw, ev.decision)
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
	body, charged, ok := s.readJSONBody(w, r)
	if !ok {
		return
	}
	defer s.budget.release(charged)
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

// growStack makes the calling goroutine's stack at least about 16 KiB deep
// while it is still shallow. Decoding a pod recurses deeply; over HTTP/2
// every request runs on a fresh goroutine whose small stack would
// otherwise be doubled several times mid-decode, each time copied with all
// its frames, which showed up as about a tenth of the instructions per
// review (runtime.newstack, copystack, pcvalue).
//
//go:noinline
func growStack() byte {
	var pad [16 << 10]byte
	return stackSink(&pad)
}

//go:noinline
func stackSink(p *[16 << 10]byte) byte { return p[len(p)-1] }
