//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// bare creates a bare pod running podapp and returns it as stored.
func bare(ctx context.Context, t *testing.T, ns, name string, annotations map[string]string, mutate func(*corev1.PodSpec), opts metav1.CreateOptions) *corev1.Pod {
	t.Helper()
	spec := clientSpec(glibcImage)
	spec.RestartPolicy = corev1.RestartPolicyNever
	if mutate != nil {
		mutate(&spec)
	}
	p, err := e2e.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations, Labels: map[string]string{"e2e": "bare"}},
		Spec:       spec,
	}, opts)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	return p
}

// c3Admission: what the webhook must leave alone, and server-side dry-run.
func c3Admission(ctx context.Context, t *testing.T) {
	// A control pod proves the webhook is active for the namespace, so an
	// untouched pod below means "left alone", not "webhook down".
	if p := bare(ctx, t, nsEnabled, "control", nil, nil, metav1.CreateOptions{}); !patched(p) {
		t.Fatalf("control pod in %s not patched: the webhook is not answering", nsEnabled)
	}
	untouched := func(p *corev1.Pod, why string) {
		t.Helper()
		want := corev1.DNSClusterFirst
		if why == "dnsPolicy Default" {
			want = corev1.DNSDefault
		}
		if p.Annotations[injectedAnno] != "" || p.Spec.DNSPolicy != want {
			t.Errorf("%s: pod %s was mutated (dnsPolicy %s, annotations %v)", why, p.Name, p.Spec.DNSPolicy, p.Annotations)
		}
	}
	untouched(bare(ctx, t, nsPlain, "plain", nil, nil, metav1.CreateOptions{}), "unlabelled namespace")

	// kube-system stays untouched even when labelled.
	lbl, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{enabledLabel: "true"}}})
	if _, err := e2e.client.CoreV1().Namespaces().Patch(ctx, "kube-system", types.MergePatchType, lbl, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	untouched(bare(ctx, t, "kube-system", "e2e-ks", nil, nil, metav1.CreateOptions{}), "kube-system")
	unl, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{enabledLabel: nil}}})
	_, _ = e2e.client.CoreV1().Namespaces().Patch(ctx, "kube-system", types.MergePatchType, unl, metav1.PatchOptions{})
	_ = e2e.client.CoreV1().Pods("kube-system").Delete(ctx, "e2e-ks", metav1.DeleteOptions{})

	untouched(bare(ctx, t, nsEnabled, "off", map[string]string{modeAnnotation: "off"}, nil, metav1.CreateOptions{}), "mode off")
	untouched(bare(ctx, t, nsEnabled, "default", nil, func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSDefault }, metav1.CreateOptions{}), "dnsPolicy Default")
	own := &corev1.PodDNSConfig{Nameservers: []string{"10.200.0.1"}}
	p := bare(ctx, t, nsEnabled, "none", nil, func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSNone; s.DNSConfig = own }, metav1.CreateOptions{})
	if p.Annotations[injectedAnno] != "" || len(p.Spec.DNSConfig.Nameservers) != 1 || p.Spec.DNSConfig.Nameservers[0] != "10.200.0.1" {
		t.Errorf("dnsPolicy None with its own dnsConfig was changed: %+v", p.Spec.DNSConfig)
	}

	// Server-side dry-run: the answer is patched, nothing is stored.
	dry := bare(ctx, t, nsEnabled, "dry", nil, nil, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !patched(dry) {
		t.Errorf("dry-run answer not patched: dnsPolicy %s", dry.Spec.DNSPolicy)
	}
	if _, err := e2e.client.CoreV1().Pods(nsEnabled).Get(ctx, "dry", metav1.GetOptions{}); err == nil {
		t.Errorf("dry-run pod was stored")
	}
	for _, n := range []string{"control", "off", "default", "none"} {
		_ = e2e.client.CoreV1().Pods(nsEnabled).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
	}
	_ = e2e.client.CoreV1().Pods(nsPlain).Delete(ctx, "plain", metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
}
