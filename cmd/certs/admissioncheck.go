package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/dnsguard/dnsguard/webhook"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

func init() {
	subcommands["admission-check"] = subcommand{
		"wait until the API server returns a dry-run probe pod patched by the webhook (Helm post-install hook)",
		runAdmissionCheck,
	}
}

// ProbeLabel marks the check's dry-run pods; the chart's probe.dnsguard.io
// webhook entry sends only pods with this label, in the release namespace,
// and only dry-run requests.
const (
	probeLabel = "dnsguard.io/probe"
	probeValue = "admission-check"
)

// runAdmissionCheck runs as the chart's post-install hook (a Pod). Helm's --wait ends when the Deployments are Ready, but the API
// server reaches the webhook only once kube-proxy has programmed the
// Service's endpoints (and trusts the caBundle): on a loaded node, e2e c8
// saw pods admitted unpatched 3.5 s after `helm install --wait` returned.
// The probe goes the whole way a pod goes (API server, caBundle, Service,
// kube-proxy, webhook), so the helm command returns only once pods are
// patched, or fails saying what the probe saw. Upgrades keep the Service
// and ready endpoints throughout a rollout, so they do not run it.
func runAdmissionCheck(args []string) error {
	fs := flag.NewFlagSet("certs admission-check", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG)")
	namespace := fs.String("namespace", "", "namespace of the probe pods: the release namespace, the only one the probe webhook entry selects (default: the pod's namespace)")
	image := fs.String("probe-image", "", "image named by the probe pod (never pulled: the pod is only dry-run created); the chart passes its own so that image policies admit it (required)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for a patched probe pod before failing")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between probe pods")
	inARow := fs.Int("in-a-row", 3, "patched probe pods in a row that end the check (each may reach another webhook replica)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ns := *namespace
	if ns == "" {
		ns = podNamespace()
	}
	switch {
	case ns == "":
		return errors.New("--namespace is required outside a pod")
	case *image == "":
		return errors.New("--probe-image is required")
	case *timeout <= 0:
		return fmt.Errorf("--timeout=%s: must be positive", *timeout)
	case *interval <= 0:
		return fmt.Errorf("--interval=%s: must be positive", *interval)
	case *inARow < 1:
		return fmt.Errorf("--in-a-row=%d: must be at least 1", *inARow)
	}
	client, err := clientset(*kubeconfig, "dnsguard-admission-check")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return admissionCheck(ctx, client, probeOptions{namespace: ns, image: *image, interval: *interval, inARow: *inARow},
		slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

type probeOptions struct {
	namespace string
	image     string
	interval  time.Duration
	inARow    int
}

// admissionCheck dry-run creates probe pods until o.inARow in a row come
// back patched, or ctx ends; the error then says what the last probe saw.
func admissionCheck(ctx context.Context, client kubernetes.Interface, o probeOptions, log *slog.Logger) error {
	start := time.Now()
	var attempts, streak, unpatched int
	last := "no probe answered"
	err := wait.PollUntilContextCancel(ctx, o.interval, true, func(ctx context.Context) (bool, error) {
		attempts++
		p, err := client.CoreV1().Pods(o.namespace).Create(ctx, probePod(o.image), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if ctx.Err() != nil {
			return false, ctx.Err() // the deadline, not the API server's answer
		}
		seen, ok := probeVerdict(p, err)
		if !ok {
			streak = 0
			unpatched++
			if seen != last {
				log.Info("probe pod not patched yet", "after", time.Since(start).Round(time.Millisecond).String(), "saw", seen)
			}
			last = seen
			return false, nil
		}
		streak++
		return streak >= o.inARow, nil
	})
	if err != nil {
		return fmt.Errorf("no probe pod came back patched %d times in a row within %s (%d probes): the last one was %s",
			o.inARow, time.Since(start).Round(time.Second), attempts, last)
	}
	log.Info("the API server sends pods through the webhook", "after", time.Since(start).Round(time.Millisecond).String(),
		"probes", attempts, "unpatched", unpatched)
	return nil
}

// probeVerdict: ok when the API server returned the pod with the webhook's
// mark and the dnsconfig it asked for; otherwise what was seen, for the
// user who reads why the install failed.
func probeVerdict(p *corev1.Pod, err error) (seen string, ok bool) {
	switch {
	case err != nil:
		return fmt.Sprintf("refused by the API server: %v", err), false
	case p.Annotations[webhook.AnnotationInjected] == "":
		return "admitted unchanged: the API server did not reach the webhook (its Service has no programmed endpoints yet, the caBundle is not trusted yet, or the webhook is down or too slow; failurePolicy Ignore admits pods unpatched meanwhile)", false
	case p.Spec.DNSPolicy != corev1.DNSNone || p.Spec.DNSConfig == nil || len(p.Spec.DNSConfig.Nameservers) == 0:
		return fmt.Sprintf("marked %s=%q but without the dnsconfig mode's settings (dnsPolicy %q)",
			webhook.AnnotationInjected, p.Annotations[webhook.AnnotationInjected], p.Spec.DNSPolicy), false
	}
	return "", true
}

// probePod is the pod the check dry-run creates: dnsconfig mode asked for
// explicitly (whatever the chart's defaultMode), and a spec that the
// restricted Pod Security level and a namespace ResourceQuota admit.
func probePod(image string) *corev1.Pod {
	no, yes := false, true
	small := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("8Mi")}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "dnsguard-admission-check-",
			Labels:       map[string]string{probeLabel: probeValue},
			Annotations:  map[string]string{webhook.AnnotationMode: "dnsconfig"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "probe",
				Image: image,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				Resources: corev1.ResourceRequirements{Requests: small, Limits: small},
			}},
		},
	}
}
