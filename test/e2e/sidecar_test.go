//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const nsRestricted = "e2e-restricted"

// c2Sidecar: sidecar mode in a namespace enforcing Pod Security
// "restricted". The pod is admitted and Ready; the resolver starts before the
// app (the app's very first lookups succeed); its probes pass; the app's
// lookups go through 127.0.0.1 (the resolver counts them); on deletion the
// app stops before the resolver.
func c2Sidecar(ctx context.Context, t *testing.T) {
	createNamespace(ctx, t, nsRestricted, map[string]string{
		enabledLabel:                         "true",
		"pod-security.kubernetes.io/enforce": "restricted",
	})
	names := []string{"kubernetes.default", "echo." + nsOther, "echo." + nsOther + ".svc.cluster.local", "www.dnsguard.test"}
	pods := deployment(ctx, t, nsRestricted, "sidecar-glibc", 1, map[string]string{modeAnnotation: "sidecar"}, clientSpec(glibcImage, names...))
	p := pods[0]

	if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != sidecarName {
		t.Fatalf("pod %s: no %s native sidecar first in initContainers", p.Name, sidecarName)
	}
	sc := p.Spec.InitContainers[0]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar restartPolicy %v, want Always (native sidecar)", sc.RestartPolicy)
	}
	if p.Spec.DNSConfig == nil || len(p.Spec.DNSConfig.Nameservers) == 0 || p.Spec.DNSConfig.Nameservers[0] != "127.0.0.1" {
		t.Fatalf("pod %s: nameservers %v, want 127.0.0.1 first", p.Name, p.Spec.DNSConfig)
	}
	// Started and Ready (its readiness probe passed), never restarted.
	var scStatus, appStatus *corev1.ContainerStatus
	for i := range p.Status.InitContainerStatuses {
		if p.Status.InitContainerStatuses[i].Name == sidecarName {
			scStatus = &p.Status.InitContainerStatuses[i]
		}
	}
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == "app" {
			appStatus = &p.Status.ContainerStatuses[i]
		}
	}
	if scStatus == nil || appStatus == nil || scStatus.State.Running == nil || appStatus.State.Running == nil {
		t.Fatalf("pod %s: sidecar/app not both running: %+v %+v", p.Name, scStatus, appStatus)
	}
	if !scStatus.Ready || scStatus.RestartCount != 0 {
		t.Errorf("sidecar ready=%v restarts=%d, want ready and never restarted", scStatus.Ready, scStatus.RestartCount)
	}
	if scStatus.State.Running.StartedAt.After(appStatus.State.Running.StartedAt.Time) {
		t.Errorf("sidecar started at %s, after the app (%s)", scStatus.State.Running.StartedAt, appStatus.State.Running.StartedAt)
	}
	log, err := logs(ctx, nsRestricted, p.Name, "app")
	if err != nil {
		t.Fatal(err)
	}
	res := firstLookups(log)
	for _, n := range names {
		if res[n] != "ok" {
			t.Errorf("the app's first getaddrinfo(%s): %q, want ok (was the resolver up first?)\n%s", n, res[n], log)
		}
	}

	// The app's lookups reach the resolver on 127.0.0.1: its query counter
	// grows by at least the A and AAAA of every lookup.
	before := resolverQueries(ctx, t, nsRestricted, p.Name)
	const lookups = 5
	if out, err := execIn(ctx, nsRestricted, p.Name, "app", "/gailoop", "-n", strconv.Itoa(lookups), "-t", "20", "www.dnsguard.test"); err != nil || strings.Contains(out, "fail") {
		t.Errorf("gailoop through the sidecar: %v\n%s", err, out)
	}
	after := resolverQueries(ctx, t, nsRestricted, p.Name)
	if after-before < 2*lookups {
		t.Errorf("resolver counted %d client queries during %d lookups, want at least %d (lookups bypass 127.0.0.1?)", after-before, lookups, 2*lookups)
	}

	// Deletion: hold the pod object with a finalizer so the final container
	// states and logs stay readable, then compare when each one stopped.
	const fin = "dnsguard.io/e2e-hold"
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": []string{fin}}})
	if _, err := e2e.client.CoreV1().Pods(nsRestricted).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("add finalizer: %v", err)
	}
	defer func() {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": nil}})
		_, _ = e2e.client.CoreV1().Pods(nsRestricted).Patch(context.Background(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	}()
	// Scale to 0 first so the ReplicaSet does not replace it.
	scale, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": 0}})
	if _, err := e2e.client.AppsV1().Deployments(nsRestricted).Patch(ctx, "sidecar-glibc", types.MergePatchType, scale, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var final *corev1.Pod
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := e2e.client.CoreV1().Pods(nsRestricted).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		final = cur
		for _, cs := range append(cur.Status.InitContainerStatuses, cur.Status.ContainerStatuses...) {
			if cs.State.Terminated == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("containers not all terminated 60s after deletion: %v", err)
	}
	appLog, _ := logs(ctx, nsRestricted, p.Name, "app")
	scLog, _ := logs(ctx, nsRestricted, p.Name, sidecarName)
	appTerm := logTime(appLog, "sigterm")
	scTerm := logTime(scLog, "signal received")
	if appTerm.IsZero() || scTerm.IsZero() {
		t.Fatalf("no SIGTERM line in the logs (app %v, sidecar %v)\napp:\n%s\nsidecar:\n%s", appTerm, scTerm, appLog, scLog)
	}
	if !appTerm.Before(scTerm) {
		t.Errorf("the sidecar got SIGTERM at %s, before the app did at %s: the app lost its resolver while stopping",
			scTerm.Format(time.RFC3339Nano), appTerm.Format(time.RFC3339Nano))
	}
	for _, cs := range final.Status.InitContainerStatuses {
		if cs.Name == sidecarName && cs.State.Terminated.ExitCode != 0 {
			t.Errorf("sidecar exit code %d on pod deletion, want 0", cs.State.Terminated.ExitCode)
		}
	}
}

// logTime returns kubelet's timestamp of the first log line containing s.
func logTime(log, s string) time.Time {
	for _, l := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(l, " ")
		if ok && strings.Contains(rest, s) {
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

var queriesRE = regexp.MustCompile(`(?m)^dnsguard_resolver_queries_total\{proto="(udp|tcp)"\} (\d+)`)

// resolverQueries reads the resolver's client query counter from its
// loopback health listener (127.0.0.1:8053 inside the pod), reached with
// kubectl port-forward as an operator would.
func resolverQueries(ctx context.Context, t *testing.T, ns, pod string) int {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(pctx, filepath.Join(e2e.bin, "kubectl"), "port-forward", "-n", ns, "pod/"+pod, "--address=127.0.0.1", "0:8053")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubectl port-forward: %v", err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	// "Forwarding from 127.0.0.1:41234 -> 8053"
	sc := bufio.NewScanner(stdout)
	port := ""
	for sc.Scan() {
		if m := regexp.MustCompile(`127\.0\.0\.1:(\d+) ->`).FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if port == "" {
		t.Fatalf("kubectl port-forward printed no local port")
	}
	return scrapeQueries(t, fmt.Sprintf("http://127.0.0.1:%s/metrics", port))
}

// scrapeQueries GETs a resolver's /metrics at url and returns its client
// query counter (UDP plus TCP).
func scrapeQueries(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET resolver metrics %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET resolver metrics %s: %s\n%.500s", url, resp.Status, b)
	}
	n := 0
	for _, m := range queriesRE.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.Atoi(m[2])
		n += v
	}
	if n == 0 && !strings.Contains(string(b), "dnsguard_resolver_queries_total") {
		t.Fatalf("resolver metrics at %s have no dnsguard_resolver_queries_total:\n%.2000s", url, b)
	}
	return n
}
