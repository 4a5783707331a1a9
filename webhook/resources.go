package webhook

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Annotations overriding the sidecar's resources, on the pod or (for all
// its pods) on the Namespace; the pod's win. Istio's sidecar.istio.io/proxyCPU
// family works the same way.
const (
	AnnotationSidecarCPU         = "dnsguard.io/sidecar-cpu"
	AnnotationSidecarCPULimit    = "dnsguard.io/sidecar-cpu-limit"
	AnnotationSidecarMemory      = "dnsguard.io/sidecar-memory"
	AnnotationSidecarMemoryLimit = "dnsguard.io/sidecar-memory-limit"
)

// resourceKnob ties one annotation to one field of the sidecar's resources.
type resourceKnob struct {
	annotation string
	name       corev1.ResourceName
	limit      bool
}

var resourceKnobs = []resourceKnob{
	{AnnotationSidecarCPU, corev1.ResourceCPU, false},
	{AnnotationSidecarCPULimit, corev1.ResourceCPU, true},
	{AnnotationSidecarMemory, corev1.ResourceMemory, false},
	{AnnotationSidecarMemoryLimit, corev1.ResourceMemory, true},
}

// sidecarResources returns the resources of the sidecar injected into pod.
//
// It starts from the configured ones (cfg.Sidecar.Resources), applies the
// four annotations (pod first, else namespace), and checks the result: a
// value that does not parse or is not positive, or a request above its
// limit, is reported as a warning and that resource (cpu or memory, request
// and limit together) keeps the configured values, so a typo never yields a
// pod the API server rejects.
//
// When every other container of the pod is Guaranteed (cpu and memory
// limits set and equal to the requests) the sidecar's requests are raised to
// its limits so the pod stays in the Guaranteed QoS class (a lower
// priority for OOM kills and eviction, and exclusive CPUs under the static
// CPU manager policy). Raising the requests rather than lowering the limits
// keeps the measured CPU limit (docs/sidecar-resources.md): a limit at the
// request would throttle the DNS path.
func sidecarResources(pod *corev1.Pod, nsAnnotations map[string]string, cfg *Config, d *Decision) corev1.ResourceRequirements {
	def := cfg.Sidecar.Resources
	out := *def.DeepCopy()
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	if out.Limits == nil {
		out.Limits = corev1.ResourceList{}
	}
	bad := map[corev1.ResourceName]bool{}
	for _, k := range resourceKnobs {
		v, where := pod.Annotations[k.annotation], "pod"
		if v == "" {
			v, where = nsAnnotations[k.annotation], "namespace"
		}
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(v))
		if err != nil || q.Sign() <= 0 {
			d.warnf("ignoring %s annotation %s=%q (want a positive quantity like %s); the sidecar's %s keeps the default", where, k.annotation, v, example(k.name), k.name)
			bad[k.name] = true
			continue
		}
		if k.limit {
			out.Limits[k.name] = q
		} else {
			out.Requests[k.name] = q
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := out.Requests[name]
		lim, hasLim := out.Limits[name]
		if !bad[name] && hasReq && hasLim && req.Cmp(lim) > 0 {
			d.warnf("sidecar %s request %s is above its limit %s; using the defaults for %s", name, req.String(), lim.String(), name)
			bad[name] = true
		}
		if bad[name] {
			restore(out.Requests, def.Requests, name)
			restore(out.Limits, def.Limits, name)
		}
	}
	if guaranteedPod(pod) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			lim, ok := out.Limits[name]
			if !ok {
				// No limit to match: fall back to the request as the limit.
				lim, ok = out.Requests[name]
			}
			if ok {
				out.Limits[name] = lim.DeepCopy()
				out.Requests[name] = lim.DeepCopy()
			}
		}
	}
	if len(out.Requests) == 0 {
		out.Requests = nil
	}
	if len(out.Limits) == 0 {
		out.Limits = nil
	}
	return out
}

func restore(dst, src corev1.ResourceList, name corev1.ResourceName) {
	if q, ok := src[name]; ok {
		dst[name] = q.DeepCopy()
	} else {
		delete(dst, name)
	}
}

func example(name corev1.ResourceName) string {
	if name == corev1.ResourceCPU {
		return "100m"
	}
	return "64Mi"
}

// guaranteedPod reports whether every container (init and app) has cpu and
// memory limits equal to its requests: the pod's QoS class is Guaranteed.
// A missing request counts as equal to the limit, as the API server defaults
// it so.
func guaranteedPod(pod *corev1.Pod) bool {
	n := 0
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			n++
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				lim, ok := c.Resources.Limits[name]
				if !ok || lim.IsZero() {
					return false
				}
				if req, ok := c.Resources.Requests[name]; ok && req.Cmp(lim) != 0 {
					return false
				}
			}
		}
	}
	return n > 0
}

// validateResources checks the configured sidecar resources.
func validateResources(r corev1.ResourceRequirements) error {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		if hasReq && req.Sign() < 0 || hasLim && lim.Sign() < 0 {
			return fmt.Errorf("sidecar resources: negative %s", name)
		}
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			return fmt.Errorf("sidecar resources: %s request %s is above its limit %s", name, req.String(), lim.String())
		}
	}
	return nil
}

// NamespaceAnnotationSource gives a namespace's annotations (nil when not
// known); a NamespaceModeSource may also implement it.
type NamespaceAnnotationSource interface {
	Annotations(namespace string) map[string]string
}

// Annotations returns the namespace's annotations from the informer cache,
// or nil before it has synced or for an unknown namespace. The map belongs
// to the cache: read it only.
func (n *NamespaceModes) Annotations(namespace string) map[string]string {
	if n == nil || !n.synced() {
		return nil
	}
	ns, err := n.lister.Get(namespace)
	if err != nil {
		return nil
	}
	return ns.Annotations
}
