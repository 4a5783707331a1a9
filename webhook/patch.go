package webhook

import (
	"errors"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

// podDoc is the pod the API server sent, decoded once: the typed pod the
// decision reads, and what a JSONPatch needs to know of the document's
// shape besides: a patch can only add members to objects that exist.
type podDoc struct {
	pod corev1.Pod
	// hasMetadata and hasSpec: the document has them as objects (not
	// absent, not null). The typed pod cannot tell: its metadata and spec
	// are structs, zero in all three cases.
	hasMetadata, hasSpec bool
}

// podIn is corev1.Pod with metadata and spec behind pointers, which stay
// nil when the member is absent or null.
type podIn struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        *metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec            *corev1.PodSpec    `json:"spec,omitempty"`
	Status          *corev1.PodStatus  `json:"status,omitempty"`
}

// decodePod decodes the request object as the API server does: field
// names case-sensitively (encoding/json would read "Spec" as spec, and a
// patch written to "spec" would then disagree with what is stored).
//
// A document that repeats a field is refused. It has no single meaning
// (RFC 8259 §4): the decoder merges repeated objects while a JSONPatch
// library keeps only the last one, so no patch could be right for both. The
// API server never sends one (it decodes the object and sends its own
// encoding); only hand-made reviews do.
func decodePod(raw []byte) (podDoc, error) {
	var in podIn
	repeated, err := sigsjson.UnmarshalStrict(raw, &in, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return podDoc{}, err
	}
	if len(repeated) > 0 {
		return podDoc{}, fmt.Errorf("repeated fields have no single meaning: %w", errors.Join(repeated...))
	}
	if in.Kind != "" && in.Kind != "Pod" {
		return podDoc{}, fmt.Errorf("object kind is %q, not Pod", in.Kind)
	}
	doc := podDoc{pod: corev1.Pod{TypeMeta: in.TypeMeta}, hasMetadata: in.Metadata != nil, hasSpec: in.Spec != nil}
	if in.Metadata != nil {
		doc.pod.ObjectMeta = *in.Metadata
	}
	if in.Spec != nil {
		doc.pod.Spec = *in.Spec
	}
	if in.Status != nil {
		doc.pod.Status = *in.Status
	}
	return doc, nil
}

// injectedPath is the marker annotation's JSON Pointer (RFC 6901: "/" in a
// key is written "~1", "~" is written "~0").
var injectedPath = "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(AnnotationInjected)

// patchFor returns the JSONPatch that applies d to the document doc was
// decoded from.
//
// The operations are written from the decision, each value being one the
// decision made; nothing of the pod is re-encoded. Re-encoding a typed pod
// would drop the fields this binary does not know (a newer API server's)
// and add defaulted empty ones, and a diff would then remove or add them
// (kubebuilder#510).
//
// Where an operation goes follows from the typed pod: a nil map, slice or
// pointer means the member is absent or null, and "add" on an object
// member creates it or replaces the null; otherwise the member exists as
// an object or array to add into. Members the pod already has a value for
// are replaced.
func patchFor(doc *podDoc, d Decision) []jsonpatch.Operation {
	if !d.Mutates() {
		return nil
	}
	ops := make([]jsonpatch.Operation, 0, 6)
	op := func(verb, path string, value any) {
		ops = append(ops, jsonpatch.Operation{Operation: verb, Path: path, Value: value})
	}
	pod := &doc.pod
	marker := map[string]string{AnnotationInjected: d.Mode}
	switch {
	case !doc.hasMetadata:
		op("add", "/metadata", map[string]any{"annotations": marker})
	case pod.Annotations == nil:
		op("add", "/metadata/annotations", marker)
	default:
		op("add", injectedPath, d.Mode)
	}

	var sidecar []corev1.Container
	if d.Sidecar != nil {
		sidecar = []corev1.Container{*d.Sidecar}
	}
	var sysctls []corev1.Sysctl
	if d.Sysctl != nil {
		sysctls = []corev1.Sysctl{*d.Sysctl}
	}
	if !doc.hasSpec {
		spec := map[string]any{"dnsPolicy": corev1.DNSNone, "dnsConfig": d.DNSConfig}
		if sidecar != nil {
			spec["initContainers"] = sidecar
		}
		if sysctls != nil {
			spec["securityContext"] = map[string]any{"sysctls": sysctls}
		}
		if len(d.PullSecrets) > 0 {
			spec["imagePullSecrets"] = d.PullSecrets
		}
		op("add", "/spec", spec)
		return ops
	}

	op(addOrReplace(pod.Spec.DNSPolicy != ""), "/spec/dnsPolicy", corev1.DNSNone)
	op(addOrReplace(pod.Spec.DNSConfig != nil), "/spec/dnsConfig", d.DNSConfig)
	switch {
	case sidecar == nil:
	case pod.Spec.InitContainers == nil:
		op("add", "/spec/initContainers", sidecar)
	default:
		op("add", "/spec/initContainers/0", sidecar[0]) // the resolver starts first
	}
	switch sc := pod.Spec.SecurityContext; {
	case sysctls == nil:
	case sc == nil:
		op("add", "/spec/securityContext", map[string]any{"sysctls": sysctls})
	case sc.Sysctls == nil:
		op("add", "/spec/securityContext/sysctls", sysctls)
	default:
		op("add", "/spec/securityContext/sysctls/-", sysctls[0])
	}
	switch {
	case len(d.PullSecrets) == 0:
	case pod.Spec.ImagePullSecrets == nil:
		op("add", "/spec/imagePullSecrets", d.PullSecrets)
	default:
		for _, ref := range d.PullSecrets {
			op("add", "/spec/imagePullSecrets/-", ref)
		}
	}
	return ops
}

// addOrReplace is the operation that sets an object member: "replace"
// says the pod's own value is overwritten; "add" also covers a member that
// is absent or null.
func addOrReplace(present bool) string {
	if present {
		return "replace"
	}
	return "add"
}
