//go:build e2e

package e2e

// The race lab's negative controls: the sidecar and the node cache made
// unable to answer, in the same lab as the rows they back.

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// controlClients: one client per C library in the negative controls.
var controlClients = []string{"glibc-gai", "musl-gai"}

// blackhole is the sidecar control's upstream: an address of TEST-NET-1
// (RFC 5737) that the lab's table drops, so it never answers.
const blackhole = "192.0.2.53"

// controlN is how many lookups a glibc negative control row does: each
// waits timeout:2 for the silent first nameserver, so 8 of them take 16 s.
// musl's lookups in a control row cost a millisecond unless the emulation
// dropped one of the fallback's pair, and its row must show at least one
// such stall: controlMuslN lookups make a row without a single collision
// (seen at 45 % a lookup on a bad run: 0.55^24 < 1e-6) out of the question
// at no cost in time.
const (
	controlN     = 8
	controlMuslN = 24
)

// webhookSpec is the pod spec the webhook gives p in the labelled
// namespace (server-side dry run), to be edited and created in the
// unlabelled namespace, where the webhook does not touch it again.
func webhookSpec(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	dry, err := e2e.client.CoreV1().Pods(nsRaceGuard).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, fmt.Errorf("server-side dry run of %s in %s: %w", p.Name, nsRaceGuard, err)
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: p.Labels, Annotations: dry.Annotations}, Spec: dry.Spec}
	// Fields the API server set for the dry run's namespace.
	out.Spec.NodeName = ""
	return out, nil
}

// sidecarControl turns the client pod into the sidecar's negative control:
// the webhook's spec with the resolver's upstream replaced by the
// blackhole.
func sidecarControl(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	out, err := webhookSpec(ctx, p)
	if err != nil {
		return nil, err
	}
	replaced := 0
	for i, ic := range out.Spec.InitContainers {
		if ic.Name != sidecarName {
			continue
		}
		for k, a := range ic.Args {
			if strings.HasPrefix(a, "--upstream=") {
				out.Spec.InitContainers[i].Args[k] = "--upstream=" + blackhole + ":53"
				replaced++
			}
		}
	}
	if replaced != 1 {
		return nil, fmt.Errorf("the webhook's sidecar for %s has %d --upstream flags, want 1 to replace", p.Name, replaced)
	}
	return out, nil
}

// sidecarNoFallback turns the client pod into the c′ row's: the webhook's
// sidecar spec with 127.0.0.1 as the only nameserver (what the chart's
// sidecar.fallback=false renders). musl then sends its parallel pair to
// the sidecar alone, so every packet the node sees from the pod is the
// sidecar's own upstream query, and the emulation judges the sidecar alone.
//
// Why the row exists (issue 19 negative control): a resolver that sent A
// and AAAA of one name at once from one UDP socket (same 5-tuple) kept every
// c row green — glibc's single-request-reopen never gives the sidecar a
// pair at once, and musl's lookups were answered by the fallback while the
// sidecar's dropped AAAA waited for its retry. In this row the musl client
// turned it red: the node saw 93 colliding packets (want 0) and 10 lookups
// took 500 ms or more (max 1005 ms: the sidecar's 1 s retry after each
// drop). glibc's row stays green under that break, as it should: it never
// sends the pair at once.
func sidecarNoFallback(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	out, err := webhookSpec(ctx, p)
	if err != nil {
		return nil, err
	}
	if out.Spec.DNSConfig == nil || len(out.Spec.DNSConfig.Nameservers) == 0 || out.Spec.DNSConfig.Nameservers[0] != "127.0.0.1" {
		return nil, fmt.Errorf("the webhook's sidecar spec for %s has no 127.0.0.1 first nameserver: %+v", p.Name, out.Spec.DNSConfig)
	}
	out.Spec.DNSConfig.Nameservers = []string{"127.0.0.1"}
	return out, nil
}
