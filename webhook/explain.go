package webhook

import (
	"encoding/json"
	"net/http"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
)

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
	// NativeSidecars is "available", or why sidecar mode cannot inject
	// native sidecars now (then it gives dnsconfig mode).
	NativeSidecars string `json:"nativeSidecars"`
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
		Mode:           ev.decision.Mode,
		Reason:         ev.decision.Reason,
		Skip:           ev.decision.Skip,
		Namespace:      ev.namespace,
		Patch:          ev.ops,
		Warnings:       append(extra, ev.decision.Warnings...),
		NativeSidecars: "available",
	}
	if why := s.native.NativeSidecarsUnavailable(); why != "" {
		out.NativeSidecars = why
	}
	if out.Patch == nil {
		out.Patch = []jsonpatch.Operation{}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	out.Before = EffectiveResolvConf(ev.pod, ev.namespace, s.ns.Nameservers(), &s.cfg)
	if ev.decision.Mutates() {
		out.ResolvConf = RenderResolvConf(ev.decision.DNSConfig)
	} else {
		out.ResolvConf = out.Before
	}
	s.writeJSON(w, out)
}
