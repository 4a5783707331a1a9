package webhook

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func rl(cpu, mem string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		l[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return l
}

func guaranteed(cpu, mem string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Resources = corev1.ResourceRequirements{Requests: rl(cpu, mem), Limits: rl(cpu, mem)}
		}
	}
}

// TestSidecarResources checks the sidecar's resources: defaults, pod and
// namespace annotations, validation (warning + default), and the
// Guaranteed rule.
func TestSidecarResources(t *testing.T) {
	cases := []struct {
		name        string
		pod         *corev1.Pod
		ns          map[string]string
		req, lim    [2]string // cpu, memory
		warn        string
		wantWarning bool
	}{
		{name: "defaults: requests and limits for cpu and memory", pod: pod(),
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "pod annotations", pod: pod(annotate(AnnotationSidecarCPU, "100m"), annotate(AnnotationSidecarCPULimit, "1"),
			annotate(AnnotationSidecarMemory, "40Mi"), annotate(AnnotationSidecarMemoryLimit, "80Mi")),
			req: [2]string{"100m", "40Mi"}, lim: [2]string{"1", "80Mi"}},
		{name: "namespace annotations", pod: pod(), ns: map[string]string{AnnotationSidecarCPU: "125m", AnnotationSidecarMemoryLimit: "128Mi"},
			req: [2]string{"125m", "32Mi"}, lim: [2]string{"500m", "128Mi"}},
		{name: "pod annotation beats namespace", pod: pod(annotate(AnnotationSidecarCPU, "75m")), ns: map[string]string{AnnotationSidecarCPU: "125m"},
			req: [2]string{"75m", "32Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "unparsable value: warning and default", pod: pod(annotate(AnnotationSidecarCPU, "lots")),
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: `dnsguard.io/sidecar-cpu="lots"`},
		{name: "zero value: warning and default", pod: pod(annotate(AnnotationSidecarMemoryLimit, "0")),
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: `sidecar-memory-limit="0"`},
		{name: "negative value: warning and default", pod: pod(annotate(AnnotationSidecarCPULimit, "-1")),
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: `sidecar-cpu-limit="-1"`},
		{name: "bad namespace value: warning names the namespace", pod: pod(), ns: map[string]string{AnnotationSidecarMemory: "much"},
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: "namespace annotation dnsguard.io/sidecar-memory"},
		{name: "request above limit: warning and both defaults for that resource", pod: pod(annotate(AnnotationSidecarMemory, "512Mi"), annotate(AnnotationSidecarCPU, "100m")),
			req: [2]string{"100m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: "memory request 512Mi is above its limit 64Mi"},
		{name: "request above an annotated limit", pod: pod(annotate(AnnotationSidecarCPULimit, "20m")),
			req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}, warn: "cpu request 50m is above its limit 20m"},
		{name: "guaranteed pod: requests raised to the limits", pod: pod(guaranteed("1", "1Gi")),
			req: [2]string{"500m", "64Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "guaranteed pod with annotated limits", pod: pod(guaranteed("1", "1Gi"), annotate(AnnotationSidecarCPULimit, "250m")),
			req: [2]string{"250m", "64Mi"}, lim: [2]string{"250m", "64Mi"}},
		{name: "guaranteed needs limits on every container", pod: pod(guaranteed("1", "1Gi"), func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "besteffort", Image: "x"})
		}), req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "burstable app (request below limit) is not guaranteed", pod: pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: rl("100m", "64Mi"), Limits: rl("1", "64Mi")}
		}), req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "limits only (requests defaulted from them) count as guaranteed", pod: pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: rl("1", "64Mi")}
		}), req: [2]string{"500m", "64Mi"}, lim: [2]string{"500m", "64Mi"}},
		{name: "an init container without limits makes it not guaranteed", pod: pod(guaranteed("1", "1Gi"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x"}}
		}), req: [2]string{"50m", "32Mi"}, lim: [2]string{"500m", "64Mi"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			var d Decision
			got := sidecarResources(tc.pod, tc.ns, &cfg, &d)
			want := corev1.ResourceRequirements{Requests: rl(tc.req[0], tc.req[1]), Limits: rl(tc.lim[0], tc.lim[1])}
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				g, w := got.Requests[name], want.Requests[name]
				if g.Cmp(w) != 0 {
					t.Errorf("request %s = %s, want %s", name, g.String(), w.String())
				}
				g, w = got.Limits[name], want.Limits[name]
				if g.Cmp(w) != 0 {
					t.Errorf("limit %s = %s, want %s", name, g.String(), w.String())
				}
			}
			if tc.warn == "" && len(d.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", d.Warnings)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q lack %q", d.Warnings, tc.warn)
			}
			// The defaults in cfg are never modified through the result.
			if q := cfg.Sidecar.Resources.Requests[corev1.ResourceCPU]; q.String() != "50m" {
				t.Errorf("config changed: %v", cfg.Sidecar.Resources)
			}
		})
	}
}

// Decide puts the resources on the sidecar it injects, and the warning in
// the decision.
func TestDecideSidecarResources(t *testing.T) {
	cfg := testConfig()
	env := testEnv
	env.NamespaceAnnotations = map[string]string{AnnotationSidecarCPULimit: "1"}
	d := Decide(pod(annotate(AnnotationMode, ModeSidecar), annotate(AnnotationSidecarMemory, "x")), env, &cfg)
	if d.Sidecar == nil {
		t.Fatalf("no sidecar: %s", d.Reason)
	}
	if got := d.Sidecar.Resources.Limits[corev1.ResourceCPU]; got.String() != "1" {
		t.Errorf("cpu limit %s, want the namespace's 1", got.String())
	}
	if !strings.Contains(strings.Join(d.Warnings, "\n"), "dnsguard.io/sidecar-memory") {
		t.Errorf("warnings %q", d.Warnings)
	}
}
