package webhook

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSidecarPullSecrets(t *testing.T) {
	refs := func(names ...string) []corev1.LocalObjectReference {
		var out []corev1.LocalObjectReference
		for _, n := range names {
			out = append(out, corev1.LocalObjectReference{Name: n})
		}
		return out
	}
	cases := []struct {
		name       string
		mode       string
		configured []string
		pod        []corev1.LocalObjectReference
		want       []string // the pod's spec.imagePullSecrets once patched
	}{
		{"none configured", ModeSidecar, nil, refs("app"), []string{"app"}},
		{"appended after the pod's own", ModeSidecar, []string{"resolver"}, refs("app"), []string{"app", "resolver"}},
		{"pod has none", ModeSidecar, []string{"resolver", "mirror"}, nil, []string{"resolver", "mirror"}},
		{"already listed: not repeated", ModeSidecar, []string{"app", "resolver"}, refs("resolver", "app"), []string{"resolver", "app"}},
		{"dnsconfig mode: no sidecar, no secret", ModeDNSConfig, []string{"resolver"}, refs("app"), []string{"app"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Sidecar.ImagePullSecrets = tc.configured
			if err := cfg.Validate(false); err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{Spec: corev1.PodSpec{ImagePullSecrets: tc.pod, Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
			pod.Namespace = "shop"
			pod.Annotations = map[string]string{AnnotationMode: tc.mode}
			d := Decide(pod, Env{Namespace: "shop", Nameservers: cfg.Nameservers}, &cfg)
			if d.Mode != tc.mode {
				t.Fatalf("mode %s, want %s (%s)", d.Mode, tc.mode, d.Reason)
			}
			pod = patchPod(t, pod, d)
			var got []string
			for _, r := range pod.Spec.ImagePullSecrets {
				got = append(got, r.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("imagePullSecrets %q, want %q", got, tc.want)
			}
			// Deciding again on the patched pod, with the marker and the DNS
			// settings reset so it is mutated again, adds no secret twice.
			delete(pod.Annotations, AnnotationInjected)
			pod.Spec.InitContainers, pod.Spec.DNSPolicy, pod.Spec.DNSConfig = nil, corev1.DNSClusterFirst, nil
			again := Decide(pod, Env{Namespace: "shop", Nameservers: cfg.Nameservers}, &cfg)
			if !again.Mutates() {
				t.Fatalf("second decision skipped (%s): the check below would prove nothing", again.Skip)
			}
			if len(again.PullSecrets) != 0 {
				t.Errorf("second decision adds %v again", again.PullSecrets)
			}
		})
	}
}
