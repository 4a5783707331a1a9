package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The request path decodes the review once and the Pod once, and writes
// the JSONPatch operations directly: the decision changes five paths at
// most, and where each one can be added follows from which of metadata,
// annotations, spec, initContainers, securityContext and sysctls the raw
// pod has. The generic path (buildPatch: the raw pod as a map, diffed with
// jsonpatch.CreatePatch) stays as the fallback for documents whose shape a
// one-pass scan cannot settle, and as the reference the fuzz test compares
// the fast path with.

// reviewIn is admissionv1.AdmissionReview as decoded by /mutate: the same
// fields with the same types (so the same reviews are malformed), except
// that the raw objects are not copied out of the request body.
type reviewIn struct {
	metav1.TypeMeta
	Request  *requestIn                     `json:"request,omitempty"`
	Response *admissionv1.AdmissionResponse `json:"response,omitempty"`
}

// requestIn mirrors admissionv1.AdmissionRequest field for field.
type requestIn struct {
	UID                types.UID                    `json:"uid"`
	Kind               metav1.GroupVersionKind      `json:"kind"`
	Resource           metav1.GroupVersionResource  `json:"resource"`
	SubResource        string                       `json:"subResource,omitempty"`
	RequestKind        *metav1.GroupVersionKind     `json:"requestKind,omitempty"`
	RequestResource    *metav1.GroupVersionResource `json:"requestResource,omitempty"`
	RequestSubResource string                       `json:"requestSubResource,omitempty"`
	Name               string                       `json:"name,omitempty"`
	Namespace          string                       `json:"namespace,omitempty"`
	Operation          admissionv1.Operation        `json:"operation"`
	UserInfo           authenticationv1.UserInfo    `json:"userInfo"`
	Object             rawRef                       `json:"object,omitempty"`
	OldObject          rawRef                       `json:"oldObject,omitempty"`
	DryRun             *bool                        `json:"dryRun,omitempty"`
	Options            rawRef                       `json:"options,omitempty"`
}

// rawRef is runtime.RawExtension without the copy: it keeps a slice of the
// request body, which the handler owns and does not change until it has
// answered. Like RawExtension, null leaves it nil.
type rawRef []byte

// UnmarshalJSON keeps b (see rawRef).
func (r *rawRef) UnmarshalJSON(b []byte) error {
	if string(b) != "null" {
		*r = b
	}
	return nil
}

func (q *requestIn) admissionRequest() *admissionv1.AdmissionRequest {
	out := &admissionv1.AdmissionRequest{
		UID: q.UID, Kind: q.Kind, Resource: q.Resource, SubResource: q.SubResource,
		RequestKind: q.RequestKind, RequestResource: q.RequestResource, RequestSubResource: q.RequestSubResource,
		Name: q.Name, Namespace: q.Namespace, Operation: q.Operation, UserInfo: q.UserInfo, DryRun: q.DryRun,
	}
	out.Object.Raw = q.Object
	return out
}

// member is what the shape scan saw of one object member.
type member struct{ present, null bool }

// absent reports whether a JSONPatch add must create the member whole.
func (m member) absent() bool { return !m.present || m.null }

// podShape is the presence of the members on the paths the patch writes.
// dnsPolicy and dnsConfig are only recorded to refuse duplicates of them.
type podShape struct {
	metadata, annotations            member
	spec, initContainers, secContext member
	sysctls, dnsPolicy, dnsConfig    member
}

// scanPodShape walks raw (a JSON document that already decoded as a Pod)
// once without allocating. ok is false when the shape is unusual — not an
// object, a key written with escapes or a duplicated key on the walked
// path — where a decoder's idea of the pod and a patch's idea of the
// document may differ; the caller then uses the generic path.
func scanPodShape(raw []byte) (sh podShape, ok bool) {
	sc := jsonScanner{b: raw}
	ok = sc.object(func(key string) bool {
		switch key {
		case "metadata":
			return sc.child(&sh.metadata, func(key string) bool {
				if key == "annotations" {
					return sc.leaf(&sh.annotations)
				}
				return sc.skip()
			})
		case "spec":
			return sc.child(&sh.spec, func(key string) bool {
				switch key {
				case "initContainers":
					return sc.leaf(&sh.initContainers)
				case "dnsPolicy":
					return sc.leaf(&sh.dnsPolicy)
				case "dnsConfig":
					return sc.leaf(&sh.dnsConfig)
				case "securityContext":
					return sc.child(&sh.secContext, func(key string) bool {
						if key == "sysctls" {
							return sc.leaf(&sh.sysctls)
						}
						return sc.skip()
					})
				}
				return sc.skip()
			})
		}
		return sc.skip()
	})
	if ok {
		sc.ws()
		ok = sc.i == len(sc.b)
	}
	return sh, ok
}

// jsonScanner steps through valid JSON. Every method reports false on
// anything it does not expect, which sends the caller to the generic path.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object iterates the members of the object at the cursor; member is
// called with the cursor on the value and must consume it. A key with an
// escape is refused (it could spell a name this scan matches bytewise).
func (s *jsonScanner) object(member func(key string) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		start := s.i + 1
		end := start
		for end < len(s.b) && s.b[end] != '"' {
			if s.b[end] == '\\' {
				return false
			}
			end++
		}
		if end >= len(s.b) {
			return false
		}
		key := s.b[start:end]
		s.i = end + 1
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(unsafeString(key)) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// unsafeString views b as a string without copying; the keys it makes are
// only compared, never kept.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// leaf records m (refusing a second occurrence) and skips the value.
func (s *jsonScanner) leaf(m *member) bool {
	if m.present {
		return false
	}
	m.present = true
	if s.isNull() {
		m.null = true
	}
	return s.skip()
}

// child records m and walks its object value with member; null is fine.
func (s *jsonScanner) child(m *member, member func(key string) bool) bool {
	if m.present {
		return false
	}
	m.present = true
	if s.isNull() {
		m.null = true
		return s.skip()
	}
	return s.object(member)
}

func (s *jsonScanner) isNull() bool {
	return len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null"
}

// skip steps over one value.
func (s *jsonScanner) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; c {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			if !structural[s.b[s.i]] {
				s.i++ // the common case, kept to a table lookup
				continue
			}
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				if depth++; depth > maxSkipDepth {
					return false
				}
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // number, true, false, null
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return true
			}
			s.i++
		}
		return true
	}
}

// skipString steps over a string. Pods are mostly string bytes, so the
// closing quote is looked for with bytes.IndexByte (vectorized); a quote
// preceded by an odd number of backslashes is escaped and does not count.
// maxSkipDepth bounds the nesting skip accepts. Real pods nest a few
// dozen levels at most; far deeper documents go to the generic paths,
// whose decoders count depth from the document root (encoding/json fails
// beyond 10000 levels, counted over the whole review), so that a depth
// error happens exactly where it did before.
const maxSkipDepth = 1000

// structural marks the bytes skip must look at inside an object or array.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

func (s *jsonScanner) skipString() bool {
	s.i++ // opening quote
	for {
		n := bytes.IndexByte(s.b[s.i:], '"')
		if n < 0 {
			s.i = len(s.b)
			return false
		}
		q := s.i + n
		bs := 0
		for j := q - 1; j >= s.i && s.b[j] == '\\'; j-- {
			bs++
		}
		s.i = q + 1
		if bs%2 == 0 {
			return true
		}
	}
}

// pointerEscaper escapes a JSON Pointer reference token (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// fastPatch writes the operations that apply d to the raw pod, or falls
// back to buildPatch when the pod's shape is unusual (see scanPodShape).
// Both give the same resulting pod; FuzzFastPatch checks it.
func fastPatch(raw []byte, d Decision) ([]jsonpatch.Operation, error) {
	if !d.Mutates() {
		return nil, nil
	}
	sh, ok := scanPodShape(raw)
	// Sidecar image pull secrets are merged into the pod's own list (no
	// duplicates); they are configured rarely, so the general diff serves
	// them rather than a second hand-written path.
	if !ok || len(d.PullSecrets) > 0 {
		return buildPatch(raw, d)
	}
	add := func(path string, value []byte) jsonpatch.Operation {
		return jsonpatch.Operation{Operation: "add", Path: path, Value: json.RawMessage(value)}
	}
	ops := make([]jsonpatch.Operation, 0, 6)
	marker := appendJSONString(nil, d.Mode)
	annotations := append(append(appendJSONString([]byte{'{'}, AnnotationInjected), ':'), marker...)
	annotations = append(annotations, '}')
	switch {
	case sh.metadata.absent():
		ops = append(ops, add("/metadata", append(append([]byte(`{"annotations":`), annotations...), '}')))
	case sh.annotations.absent():
		ops = append(ops, add("/metadata/annotations", annotations))
	default:
		ops = append(ops, add("/metadata/annotations/"+pointerEscaper.Replace(AnnotationInjected), marker))
	}

	dnsConfig, err := json.Marshal(d.DNSConfig)
	if err != nil {
		return nil, fmt.Errorf("encode dnsConfig: %w", err)
	}
	var sidecar, sysctl []byte
	if d.Sidecar != nil {
		if sidecar, err = json.Marshal(d.Sidecar); err != nil {
			return nil, fmt.Errorf("encode sidecar: %w", err)
		}
	}
	if d.Sysctl != nil {
		if sysctl, err = json.Marshal(d.Sysctl); err != nil {
			return nil, fmt.Errorf("encode sysctl: %w", err)
		}
	}
	if sh.spec.absent() {
		spec := append([]byte(`{"dnsPolicy":"None","dnsConfig":`), dnsConfig...)
		if sidecar != nil {
			spec = append(append(append(spec, `,"initContainers":[`...), sidecar...), ']')
		}
		if sysctl != nil {
			spec = append(append(append(spec, `,"securityContext":{"sysctls":[`...), sysctl...), "]}"...)
		}
		return append(ops, add("/spec", append(spec, '}'))), nil
	}
	ops = append(ops, add("/spec/dnsPolicy", []byte(`"None"`)), add("/spec/dnsConfig", dnsConfig))
	if sidecar != nil {
		if sh.initContainers.absent() {
			ops = append(ops, add("/spec/initContainers", append(append([]byte{'['}, sidecar...), ']')))
		} else {
			ops = append(ops, add("/spec/initContainers/0", sidecar))
		}
	}
	if sysctl != nil {
		switch {
		case sh.secContext.absent():
			ops = append(ops, add("/spec/securityContext", append(append([]byte(`{"sysctls":[`), sysctl...), "]}"...)))
		case sh.sysctls.absent():
			ops = append(ops, add("/spec/securityContext/sysctls", append(append([]byte{'['}, sysctl...), ']')))
		default:
			ops = append(ops, add("/spec/securityContext/sysctls/-", sysctl))
		}
	}
	return ops, nil
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// it (HTML-safe escapes, invalid UTF-8 as U+FFFD), so answers do not change
// with the encoder.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendPatch encodes ops as a JSON array; values the fast path wrote are
// copied as they are, anything else (the generic path's) goes through
// encoding/json.
func appendPatch(b []byte, ops []jsonpatch.Operation) ([]byte, error) {
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendJSONString(b, op.Operation)
		b = append(b, `,"path":`...)
		b = appendJSONString(b, op.Path)
		switch v := op.Value.(type) {
		case nil:
		case json.RawMessage:
			b = append(append(b, `,"value":`...), v...)
		default:
			vb, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("encode patch value at %s: %w", op.Path, err)
			}
			b = append(append(b, `,"value":`...), vb...)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendReview encodes the AdmissionReview answer, the same document
// encoding/json makes of admissionv1.AdmissionReview{Response: resp} for the
// fields the webhook sets (uid, allowed, patch, patchType, warnings); the
// caller uses encoding/json when resp has any other field set.
func appendReview(b []byte, resp *admissionv1.AdmissionResponse) []byte {
	b = append(b, `{"kind":"AdmissionReview","apiVersion":"`+admissionV1+`","response":{"uid":`...)
	b = appendJSONString(b, string(resp.UID))
	if resp.Allowed {
		b = append(b, `,"allowed":true`...)
	} else {
		b = append(b, `,"allowed":false`...)
	}
	if len(resp.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, resp.Patch)
		b = append(b, '"')
	}
	if resp.PatchType != nil {
		b = append(b, `,"patchType":`...)
		b = appendJSONString(b, string(*resp.PatchType))
	}
	if len(resp.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range resp.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...)
}
