//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// env is what dgcluster run hands over: a running cluster (KUBECONFIG) and
// where the repository, the binaries and the report are.
type env struct {
	kubeconfig string
	root       string // repository root (charts/, hack/release.sh)
	bin        string // ./bin with helm, kubectl
	logs       string // where helm/kubectl output of the run goes
	report     string
	client     kubernetes.Interface
	// proxyMode is the mode kube-proxy runs in: dgcluster's --proxy-mode
	// (CLUSTER_PROXY_MODE), until k1 switches it (CLUSTER_CONTROL).
	proxyMode cluster.ProxyMode
	control   string
	// nodes are the cluster's node names, the first node (where this
	// binary runs) first (CLUSTER_NODES).
	nodes []string
	// dualStack: the cluster runs IPv4 and IPv6 (CLUSTER_DUAL_STACK).
	dualStack bool
}

var e2e env

func loadEnv() error {
	for _, f := range []struct {
		k string
		p *string
	}{
		{"KUBECONFIG", &e2e.kubeconfig}, {"E2E_ROOT", &e2e.root}, {"E2E_BIN", &e2e.bin},
		{"E2E_LOGS", &e2e.logs}, {"E2E_REPORT", &e2e.report}, {"CLUSTER_CONTROL", &e2e.control},
	} {
		if *f.p = os.Getenv(f.k); *f.p == "" {
			return fmt.Errorf("%s is not set: run the suite through `make e2e` (dgcluster run)", f.k)
		}
	}
	e2e.nodes = strings.Split(os.Getenv("CLUSTER_NODES"), ",")
	if e2e.nodes[0] != cluster.NodeName {
		return fmt.Errorf("CLUSTER_NODES=%q: want %s first", os.Getenv("CLUSTER_NODES"), cluster.NodeName)
	}
	e2e.proxyMode = cluster.ProxyMode(os.Getenv("CLUSTER_PROXY_MODE"))
	if err := e2e.proxyMode.Valid(); err != nil {
		return fmt.Errorf("CLUSTER_PROXY_MODE: %w", err)
	}
	e2e.dualStack = os.Getenv("CLUSTER_DUAL_STACK") == "true"
	if err := os.MkdirAll(e2e.logs, 0o755); err != nil {
		return err
	}
	chart, err := os.ReadFile(filepath.Join(e2e.root, chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^appVersion: "?([^"\s]+)"?`).FindSubmatch(chart)
	if m == nil {
		return errors.New("no appVersion in Chart.yaml")
	}
	tag := string(m[1])
	glibcImage, muslImage, busyboxImage = "dnsguard/test-client-glibc:"+tag, "dnsguard/test-client-musl:"+tag, "dnsguard/test-busybox:"+tag
	v := regexp.MustCompile(`(?m)^version: "?([^"\s]+)"?`).FindSubmatch(chart)
	if v == nil {
		return errors.New("no version in Chart.yaml")
	}
	if err := loadRelease(string(v[1])); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e2e.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	e2e.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// --- report -------------------------------------------------------------

type result struct {
	id, title string
	status    string // PASS, FAIL, NOT RUN
	took      time.Duration
	// proxyMode is kube-proxy's mode the scenario ran in (at its end).
	proxyMode cluster.ProxyMode
}

var (
	resultsMu sync.Mutex
	results   []result
)

// scenario runs fn as subtest id and records its outcome and duration.
func scenario(t *testing.T, id, title string, fn func(t *testing.T)) bool {
	start := time.Now()
	ran := false
	ok := t.Run(id, func(t *testing.T) {
		ran = true
		// A scenario is reported as run in e2e.proxyMode: make sure it is.
		if err := checkProxyMode(t.Context()); err != nil {
			t.Fatal(err)
		}
		fn(t)
	})
	if !ran {
		return true // not selected by -run: reported as NOT RUN
	}
	st := "PASS"
	if !ok {
		st = "FAIL"
	}
	record(result{id: id, title: title, status: st, took: time.Since(start), proxyMode: e2e.proxyMode})
	return ok
}

func record(r result) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, r)
}

func writeReport() error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	pass, fail, notRun := 0, 0, 0
	for _, r := range results {
		fmt.Fprintf(&b, "%-7s %-3s %-8s %-100s %6.1fs\n", r.status, r.id, r.proxyMode, r.title, r.took.Seconds())
		switch r.status {
		case "PASS":
			pass++
		case "NOT RUN":
			notRun++
		default:
			fail++
		}
	}
	fmt.Fprintf(&b, "scenarios: %d passed, %d failed, %d skipped\n", pass, fail, notRun)
	return os.WriteFile(e2e.report, []byte(b.String()), 0o644)
}

// --- tools --------------------------------------------------------------

// tool runs ./bin/NAME (helm, kubectl) with the admin kubeconfig; the output
// also goes to logs/NAME.log.
func tool(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e2e.bin, name), args...)
	home := filepath.Join(e2e.logs, "helm-home")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if f, ferr := os.OpenFile(filepath.Join(e2e.logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== %s %s %s\n%s\n", time.Now().Format(time.TimeOnly), name, strings.Join(args, " "), out.String())
		f.Close()
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// execIn runs argv in a container (kubectl exec) and returns its stdout.
func execIn(ctx context.Context, ns, pod, container string, argv ...string) (string, error) {
	args := []string{"exec", "-n", ns, pod}
	if container != "" {
		args = append(args, "-c", container)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(e2e.bin, "kubectl"), append(append(args, "--"), argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl exec %s/%s -- %s: %w: %s", ns, pod, strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// --- cluster helpers ----------------------------------------------------

func ptr[T any](v T) *T { return &v }

func poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, cond)
}

// dryRunNameservers is the dnsConfig nameservers the webhook gives pod in
// ns: a server-side dry run of its creation (nil without a dnsConfig).
func dryRunNameservers(ctx context.Context, ns string, pod *corev1.Pod) ([]string, error) {
	p, err := e2e.client.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || p.Spec.DNSConfig == nil {
		return nil, err
	}
	return p.Spec.DNSConfig.Nameservers, nil
}

// webhookSettled waits (bounded) until no replica but the current ones can
// admit a pod (a rollout that kubectl reports complete still has old
// replicas draining: they answer, with the old configuration, until every
// API server and kube-proxy has dropped their endpoints): the webhook Deployment rolled out, none of its pods
// terminating (a draining replica still answers the API server through its
// shutdown delay), and a dnsconfig pod created as a dry run in ns (a
// labelled namespace) gets want as first nameserver. A scenario that
// changed the chart's values before (c6 and the fault matrix turn the node
// cache on and off) must not hand the next one pods admitted with the old.
// Without it, k1's race lab, whose dnsconfig pods are created right after
// c6 turned the node cache off, failed in two runs out of two: one pod got
// [169.254.20.10 10.96.0.10] and stalled 2 s on each of its 50 lookups.
func webhookSettled(ctx context.Context, ns, want string, timeout time.Duration) error {
	probe := clientPod("settle-dryrun", glibcImage, "dnsconfig", "-n", "1", "127.0.0.1")
	why := ""
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		d, err := e2e.client.AppsV1().Deployments(releaseNS).Get(ctx, fullname, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		st := d.Status
		if d.Spec.Replicas == nil || st.ObservedGeneration < d.Generation || st.UpdatedReplicas != *d.Spec.Replicas || st.Replicas != *d.Spec.Replicas || st.AvailableReplicas != *d.Spec.Replicas {
			why = fmt.Sprintf("deployment %s: %d replicas, %d updated, %d available, generation %d observed %d", fullname, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas, d.Generation, st.ObservedGeneration)
			return false, nil
		}
		pods, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: webhookSelector})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				why = "webhook pod " + p.Name + " terminating"
				return false, nil
			}
		}
		got, err := dryRunNameservers(ctx, ns, probe)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		why = fmt.Sprintf("a dnsconfig pod in %s gets nameservers %v, want %s first", ns, got, want)
		return len(got) > 0 && got[0] == want, nil
	})
	if err != nil {
		return fmt.Errorf("webhook not settled after %s: %s: %w", timeout, why, err)
	}
	return nil
}

func createNamespace(ctx context.Context, t *testing.T, name string, labels map[string]string) {
	t.Helper()
	// A namespace an earlier test deleted may still be terminating (k1
	// reruns the race lab shortly after r1 deleted its namespaces): wait for
	// it to go, then create it afresh.
	err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		_, err := e2e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		}, metav1.CreateOptions{})
		if err == nil {
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("create namespace %s: %w", name, err)
		}
		cur, err := e2e.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return err == nil && cur.DeletionTimestamp == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := e2e.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: no default ServiceAccount after 60s: %v", name, err)
	}
}

// restricted is a container security context that Pod Security "restricted"
// admits.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		RunAsNonRoot:             ptr(true),
		RunAsUser:                ptr[int64](65534),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// clientSpec is a pod running podapp from a client image; it looks up names
// at start (first-lookup lines in its log) and then waits for SIGTERM.
func clientSpec(image string, names ...string) corev1.PodSpec {
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr[int64](5),
		Containers: []corev1.Container{{
			Name:            "app",
			Image:           image,
			ImagePullPolicy: corev1.PullNever,
			Command:         append([]string{"/podapp"}, names...),
			SecurityContext: restricted(),
		}},
	}
}

// deployment creates a Deployment of spec and waits until n pods are Ready.
func deployment(ctx context.Context, t *testing.T, ns, name string, replicas int32, annotations map[string]string, spec corev1.PodSpec) []corev1.Pod {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}, Spec: spec},
		},
	}
	if _, err := e2e.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	return waitReady(ctx, t, ns, "app="+name, int(replicas), 120*time.Second)
}

// waitReady waits until n pods matching selector are Ready and returns them.
func waitReady(ctx context.Context, t *testing.T, ns, selector string, n int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		l, err := e2e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods = pods[:0]
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				pods = append(pods, p)
			}
		}
		return len(pods) >= n, nil
	})
	if err != nil {
		t.Fatalf("%s: %d of %d pods (%s) Ready after %s: %v%s", ns, len(pods), n, selector, timeout, err, diagnose(ctx, ns))
	}
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// diagnose returns the namespace's pod phases and warning events: where
// kubelet and the controllers say why a pod does not start.
func diagnose(ctx context.Context, ns string) string {
	var b strings.Builder
	if l, err := e2e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range l.Items {
			fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, p.Status.Phase)
			for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				switch {
				case cs.State.Waiting != nil:
					fmt.Fprintf(&b, " [%s waiting %s: %s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
				case cs.State.Terminated != nil:
					fmt.Fprintf(&b, " [%s terminated %s exit %d]", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
				default:
					fmt.Fprintf(&b, " [%s running ready=%v restarts=%d]", cs.Name, cs.Ready, cs.RestartCount)
				}
			}
		}
	}
	if l, err := e2e.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"}); err == nil {
		for _, e := range l.Items {
			if e.Reason == "CgroupV1" {
				continue // this machine's cgroup layout; not the test's business
			}
			fmt.Fprintf(&b, "\n  event %s/%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\nnamespace " + ns + ":" + b.String()
}

// logs returns a container's log, with kubelet's RFC3339Nano timestamps.
func logs(ctx context.Context, ns, pod, container string) (string, error) {
	b, err := e2e.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Timestamps: true}).Do(ctx).Raw()
	return string(b), err
}

// --- the webhook --------------------------------------------------------

// webhookClient talks HTTPS to the webhook Service's ClusterIP (reached
// through kube-proxy's DNAT from the node namespace), trusting the CA in the
// chart's Secret and checking the Service DNS name the API server checks.
func webhookClient(ctx context.Context) (*http.Client, string, error) {
	sec, err := e2e.client.CoreV1().Secrets(releaseNS).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data["ca.crt"]) {
		return nil, "", errors.New("no CA in the TLS Secret")
	}
	svc, err := e2e.client.CoreV1().Services(releaseNS).Get(ctx, fullname, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: fullname + "." + releaseNS + ".svc",
	}}}
	return hc, fmt.Sprintf("https://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port), nil
}

// explain is what the webhook's /explain says about pod in namespace ns.
type explanation struct {
	Mode       string   `json:"mode"`
	Reason     string   `json:"reason"`
	ResolvConf string   `json:"resolvConf"`
	Warnings   []string `json:"warnings"`
}

func explain(ctx context.Context, t *testing.T, ns string, pod *corev1.Pod) explanation {
	t.Helper()
	// /explain is served on the plain-HTTP "metrics" port (the chart's
	// metricsListen), not on the HTTPS admission port.
	svc, err := e2e.client.CoreV1().Services(releaseNS).Get(ctx, fullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := ""
	for _, p := range svc.Spec.Ports {
		if p.Name == "metrics" {
			base = fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, p.Port)
		}
	}
	if base == "" {
		t.Fatalf("Service %s has no metrics port", fullname)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	body, _ := json.Marshal(pod)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/explain?namespace="+ns, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST /explain through the Service: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/explain: %s: %s", resp.Status, b)
	}
	var ex explanation
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatalf("/explain answer: %v: %s", err, b)
	}
	return ex
}

// patched reports whether a stored pod carries dnsguard's mutation.
func patched(p *corev1.Pod) bool {
	return p.Annotations[injectedAnno] != "" || (p.Spec.DNSPolicy == corev1.DNSNone && p.Spec.DNSConfig != nil)
}

func intOrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }

// webhookSelector selects the webhook Deployment's pods.
const webhookSelector = "app.kubernetes.io/instance=" + release + ",dnsguard.io/component=webhook"

// lookupNames are what every client pod resolves at start: a Service by
// short name, by FQDN, in another namespace, and a name outside the cluster
// (answered by the node's upstream through CoreDNS).
func lookupNames(ns string) []string {
	return []string{"echo", "echo." + ns + ".svc.cluster.local", "echo." + nsOther, "www.dnsguard.test"}
}

// firstLookups parses podapp's "first-lookup NAME ok|fail ..." lines.
func firstLookups(log string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(log, "\n") {
		f := strings.Fields(l)
		// kubelet's timestamp, then podapp's words.
		if len(f) >= 4 && f[1] == "first-lookup" {
			m[f[2]] = f[3]
		}
	}
	return m
}
