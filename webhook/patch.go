package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// buildPatch applies d to the raw pod JSON the API server sent and returns
// the JSONPatch from raw to the result.
//
// The mutation is done on the raw document rather than by re-marshalling a
// typed corev1.Pod: a round trip through the Go types would drop fields this
// binary does not know (a newer API server's) and add defaulted empty ones,
// and the patch would then remove or add them (kubebuilder#510). Only the
// fields the decision touches change, so the patch holds only those.
func buildPatch(raw []byte, d Decision) ([]jsonpatch.Operation, error) {
	if !d.Mutates() {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep large integers exact
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if obj == nil {
		return nil, errors.New("pod is null")
	}
	before, err := json.Marshal(touchedFields(obj))
	if err != nil {
		return nil, fmt.Errorf("encode original pod fields: %w", err)
	}
	meta, err := childObject(obj, "metadata")
	if err != nil {
		return nil, err
	}
	ann, err := childObject(meta, "annotations")
	if err != nil {
		return nil, err
	}
	ann[AnnotationInjected] = d.Mode
	spec, err := childObject(obj, "spec")
	if err != nil {
		return nil, err
	}
	spec["dnsPolicy"] = "None"
	if spec["dnsConfig"], err = toJSONValue(d.DNSConfig); err != nil {
		return nil, err
	}
	if d.Sidecar != nil {
		sc, err := toJSONValue(d.Sidecar)
		if err != nil {
			return nil, err
		}
		inits, err := childArray(spec, "initContainers")
		if err != nil {
			return nil, err
		}
		spec["initContainers"] = append([]any{sc}, inits...)
	}
	if d.Sysctl != nil {
		psc, err := childObject(spec, "securityContext")
		if err != nil {
			return nil, err
		}
		sysctls, err := childArray(psc, "sysctls")
		if err != nil {
			return nil, err
		}
		s, err := toJSONValue(d.Sysctl)
		if err != nil {
			return nil, err
		}
		psc["sysctls"] = append(sysctls, s)
	}
	if len(d.PullSecrets) > 0 {
		secrets, err := childArray(spec, "imagePullSecrets")
		if err != nil {
			return nil, err
		}
		for _, r := range d.PullSecrets {
			secrets = append(secrets, map[string]any{"name": r.Name})
		}
		spec["imagePullSecrets"] = secrets
	}
	after, err := json.Marshal(touchedFields(obj))
	if err != nil {
		return nil, fmt.Errorf("encode mutated pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("create patch: %w", err)
	}
	sortPatch(ops)
	return ops, nil
}

// sortPatch puts ops in a deterministic order (CreatePatch walks Go maps,
// so its order varies from run to run; equal requests should get equal
// answers). Ops on different object keys touch disjoint subtrees, so their
// order is free. Within one array CreatePatch only emits removes of trailing
// elements (which must run from the highest index down), adds of new
// trailing elements (lowest index up), and changes inside the common prefix
// (which those do not shift); the comparison keeps exactly that.
func sortPatch(ops []jsonpatch.Operation) {
	slices.SortStableFunc(ops, func(a, b jsonpatch.Operation) int {
		as, bs := strings.Split(a.Path, "/"), strings.Split(b.Path, "/")
		for i := 0; i < len(as) && i < len(bs); i++ {
			if as[i] == bs[i] {
				continue
			}
			ai, aerr := strconv.Atoi(as[i])
			bi, berr := strconv.Atoi(bs[i])
			if aerr != nil || berr != nil {
				return strings.Compare(as[i], bs[i])
			}
			if a.Operation == "remove" && b.Operation == "remove" && i == len(as)-1 && i == len(bs)-1 {
				return bi - ai
			}
			return ai - bi
		}
		return len(as) - len(bs)
	})
}

// touchedFields is the part of a pod document that buildPatch may change,
// at the same paths as in the whole pod. Diffing these projections instead
// of the whole pods gives the same operations — the fields left out are
// equal on both sides — while CreatePatch, which decodes and walks both
// documents, no longer re-reads containers, volumes and managedFields: that
// was half of the request path's CPU.
func touchedFields(obj map[string]any) map[string]any {
	out := map[string]any{}
	pick := func(parent string, keys ...string) {
		v, ok := obj[parent]
		if !ok {
			return
		}
		m, isObj := v.(map[string]any)
		if !isObj {
			out[parent] = v // null or malformed: keep it whole, diff as before
			return
		}
		p := make(map[string]any, len(keys))
		for _, k := range keys {
			if kv, ok := m[k]; ok {
				p[k] = kv
			}
		}
		out[parent] = p
	}
	pick("metadata", "annotations")
	pick("spec", "dnsPolicy", "dnsConfig", "initContainers", "securityContext", "imagePullSecrets")
	return out
}

// childObject returns obj[key] as an object, creating it when absent or null.
func childObject(obj map[string]any, key string) (map[string]any, error) {
	switch v := obj[key].(type) {
	case map[string]any:
		return v, nil
	case nil:
		m := map[string]any{}
		obj[key] = m
		return m, nil
	default:
		return nil, fmt.Errorf("%s is a %T, not an object", key, v)
	}
}

// childArray returns obj[key] as an array; absent or null is empty.
func childArray(obj map[string]any, key string) ([]any, error) {
	switch v := obj[key].(type) {
	case []any:
		return v, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("%s is a %T, not an array", key, v)
	}
}

func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	return out, nil
}
