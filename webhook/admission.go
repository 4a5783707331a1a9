package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const admissionV1 = "admission.k8s.io/v1"

// serveMutate is the admission endpoint: one AdmissionReview in, one out.
func (s *Server) serveMutate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.mutateDuration.Observe(time.Since(start).Seconds()) }()
	body, charged, ok := s.readJSONBody(w, r)
	if !ok {
		return
	}
	defer s.budget.release(charged)
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
	s.writeJSON(w, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionV1, Kind: "AdmissionReview"},
		Response: s.admit(review.Request),
	})
}

// admit answers one AdmissionRequest. It never denies: every failure path
// allows the pod unchanged with a warning, because DNS tuning must not block
// pod creation.
func (s *Server) admit(req *admissionv1.AdmissionRequest) (resp *admissionv1.AdmissionResponse) {
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
	case !ev.decision.Mutates():
		s.metrics.Reviews.WithLabelValues(ResultSkipped, ModeOff).Inc()
		s.metrics.Skips.WithLabelValues(ev.decision.Skip).Inc()
		log.Info("pod left unchanged", "skip", ev.decision.Skip, "reason", ev.decision.Reason, "warnings", len(resp.Warnings))
	default:
		patch, err := json.Marshal(ev.ops)
		if err != nil { // cannot happen for these types; stay safe anyway
			s.metrics.PatchErrors.Inc()
			s.metrics.Reviews.WithLabelValues(ResultError, ev.decision.Mode).Inc()
			log.Error("encoding the patch failed; pod allowed unchanged", "err", err)
			resp.Warnings = append(resp.Warnings, warningPrefix+"internal error encoding the patch; pod left unchanged")
			break
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		s.metrics.Reviews.WithLabelValues(ResultPatched, ev.decision.Mode).Inc()
		if ev.decision.Fallback != "" {
			s.metrics.SidecarFallbacks.WithLabelValues(ev.decision.Fallback).Inc()
		}
		log.Info("pod patched", "fallback", ev.decision.Fallback, "reason", ev.decision.Reason, "operations", len(ev.ops), "warnings", len(resp.Warnings))
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
	pod       *corev1.Pod // nil when it did not decode
	namespace string
	decision  Decision
	ops       []jsonpatch.Operation
	decodeErr error
}

// evaluate decodes raw, decides and writes the patch; shared by /mutate and
// /explain so both always agree.
func (s *Server) evaluate(raw []byte, namespace string) evaluation {
	var ev evaluation
	var doc podDoc
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		ev.decodeErr = errors.New("the request has no object")
	} else {
		doc, ev.decodeErr = decodePod(raw)
	}
	if ev.decodeErr != nil {
		ev.decision = Decision{Mode: ModeOff, Skip: SkipUndecodable, Reason: "the pod could not be decoded: " + ev.decodeErr.Error()}
		ev.decision.warnf("pod left unchanged: could not decode it (%v)", ev.decodeErr)
		return ev
	}
	ev.pod = &doc.pod
	ev.namespace = doc.pod.Namespace
	if ev.namespace == "" {
		ev.namespace = namespace
	}
	env := Env{Namespace: ev.namespace, Nameservers: s.ns.Nameservers(), NativeSidecarsUnavailable: s.native.NativeSidecarsUnavailable()}
	if s.nsModes != nil && ev.namespace != "" {
		env.NamespaceDefaultMode = s.nsModes.DefaultMode(ev.namespace)
		if na, ok := s.nsModes.(NamespaceAnnotationSource); ok {
			env.NamespaceAnnotations = na.Annotations(ev.namespace)
		}
	}
	ev.decision = Decide(&doc.pod, env, &s.cfg)
	ev.ops = patchFor(&doc, ev.decision)
	return ev
}
