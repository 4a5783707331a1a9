package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/webhook"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// answer is what the API server returns for one dry-run probe.
type answer int

const (
	unchanged answer = iota // webhook not reached: admitted as sent
	patched                 // the webhook's dnsconfig patch applied
	marked                  // the mark without the settings (a broken webhook)
	refused                 // the create itself failed (RBAC, quota, PSA)
)

// playAnswers makes the fake API server answer the i-th dry-run create
// with answers[i] (the last one repeats). The fake has no admission chain,
// so what the real API server would return is played here; the real path
// runs in the e2e (c8 and its negative control, test/e2e/reinstall_test.go).
func playAnswers(t *testing.T, answers ...answer) (*fake.Clientset, *int) {
	t.Helper()
	client := fake.NewClientset()
	n := 0
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		create := a.(k8stesting.CreateActionImpl)
		if dr := create.GetCreateOptions().DryRun; len(dr) != 1 || dr[0] != "All" {
			t.Errorf("probe created with DryRun %v: the check must never store a pod", dr)
		}
		pod := create.GetObject().(*corev1.Pod).DeepCopy()
		if pod.Labels[probeLabel] != probeValue || a.GetNamespace() != "dg" {
			t.Errorf("probe pod in %q labelled %v: the chart's probe entry would not send it", a.GetNamespace(), pod.Labels)
		}
		ans := answers[min(n, len(answers)-1)]
		n++
		switch ans {
		case refused:
			return true, nil, errors.New(`pods "x" is forbidden: exceeded quota`)
		case patched, marked:
			pod.Annotations[webhook.AnnotationInjected] = "dnsconfig"
		}
		if ans == patched {
			pod.Spec.DNSPolicy = corev1.DNSNone
			pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10"}}
		}
		return true, pod, nil
	})
	return client, &n
}

// TestAdmissionCheck: the check ends only after inARow patched probes in a
// row and fails naming what the last probe saw. Negative control (run once):
// with probeVerdict returning ok for every answer that is not an error,
// four of the six cases failed (all but "patched at once" and "refused").
func TestAdmissionCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []answer
		wantErr  string // empty: success
		wantSent int    // probes sent (success cases)
	}{
		{"patched at once", []answer{patched}, "", 3},
		{"reached after two unchanged", []answer{unchanged, unchanged, patched}, "", 5},
		{"a streak broken by an unchanged probe restarts", []answer{patched, patched, unchanged, patched}, "", 6},
		{"never reached", []answer{unchanged}, "admitted unchanged: the API server did not reach the webhook", 0},
		{"marked but not patched", []answer{marked}, `marked dnsguard.io/injected="dnsconfig" but without`, 0},
		{"refused", []answer{refused}, "refused by the API server: pods \"x\" is forbidden: exceeded quota", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, sent := playAnswers(t, tc.answers...)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := admissionCheck(ctx, client, probeOptions{namespace: "dg", image: "dnsguard/webhook:test", interval: 10 * time.Millisecond, inARow: 3},
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("admissionCheck: %v", err)
			case tc.wantErr == "" && *sent != tc.wantSent:
				t.Errorf("sent %d probes, want %d", *sent, tc.wantSent)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("admissionCheck error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestProbePodIsRestricted: the probe must pass the restricted Pod Security
// level a release namespace may enforce, and a ResourceQuota's demand for
// requests and limits; otherwise the check fails on clusters that are fine.
func TestProbePodIsRestricted(t *testing.T) {
	p := probePod("img")
	sc := p.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and RuntimeDefault seccomp", sc)
	}
	for _, c := range p.Spec.Containers {
		csc := c.SecurityContext
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s securityContext %+v: want no privilege escalation and all capabilities dropped", c.Name, csc)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("container %s: no %s request", c.Name, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("container %s: no %s limit", c.Name, r)
			}
		}
	}
	if p.Annotations[webhook.AnnotationMode] != "dnsconfig" {
		t.Errorf("probe mode annotation %q: want dnsconfig whatever the chart's defaultMode", p.Annotations[webhook.AnnotationMode])
	}
}
