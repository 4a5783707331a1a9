//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// env is what hack/e2e.sh hands over: a running control plane and where the
// binaries and the temporary directory are.
type env struct {
	kubeconfig  string // admin kubeconfig (system:masters)
	dir         string // temporary directory of this run; logs/ and pids/ live there
	bin         string // ./bin with webhook, certs, helm
	root        string // repository root (charts/)
	webhookPort int    // free port for the local webhook process
	report      string // where the scenario report goes

	cfg    *rest.Config
	client kubernetes.Interface
}

var e2e env

func loadEnv() error {
	get := func(k string) (string, error) {
		v := os.Getenv(k)
		if v == "" {
			return "", fmt.Errorf("%s is not set: run the e2e suite through hack/e2e.sh (make e2e)", k)
		}
		return v, nil
	}
	var err error
	for _, f := range []struct {
		k string
		p *string
	}{
		{"E2E_KUBECONFIG", &e2e.kubeconfig}, {"E2E_DIR", &e2e.dir}, {"E2E_BIN", &e2e.bin},
		{"E2E_ROOT", &e2e.root}, {"E2E_REPORT", &e2e.report},
	} {
		if *f.p, err = get(f.k); err != nil {
			return err
		}
	}
	p, err := get("E2E_WEBHOOK_PORT")
	if err != nil {
		return err
	}
	if e2e.webhookPort, err = strconv.Atoi(p); err != nil {
		return fmt.Errorf("E2E_WEBHOOK_PORT: %w", err)
	}
	pki := filepath.Join(e2e.dir, "pki")
	e2e.cfg = &rest.Config{
		Host: "https://" + readServer(),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   filepath.Join(pki, "ca.crt"),
			CertFile: filepath.Join(pki, "admin.crt"),
			KeyFile:  filepath.Join(pki, "admin.key"),
		},
		// The scenarios create pods in bursts; client-go's default 5 qps
		// would dominate the timings.
		QPS:   100,
		Burst: 200,
	}
	e2e.client, err = kubernetes.NewForConfig(e2e.cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// readServer extracts host:port from the kubeconfig e2ekit wrote ("server:"
// line), so the test does not need clientcmd.
func readServer() string {
	b, err := os.ReadFile(e2e.kubeconfig)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "server: https://"); ok {
			return v
		}
	}
	return ""
}

// --- report -------------------------------------------------------------

type result struct {
	id, title string
	status    string // PASS, FAIL, NOT RUN
	took      time.Duration
}

var (
	resultsMu sync.Mutex
	results   []result
)

// scenario runs fn as subtest id and records its outcome and duration for
// the report. It returns whether it passed.
func scenario(t *testing.T, id, title string, fn func(t *testing.T)) bool {
	start := time.Now()
	ok := t.Run(id, fn)
	st := "PASS"
	if !ok {
		st = "FAIL"
	}
	record(result{id: id, title: title, status: st, took: time.Since(start)})
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
	pass, fail := 0, 0
	for _, r := range results {
		fmt.Fprintf(&b, "%-7s %-4s %-72s %6.1fs\n", r.status, r.id, r.title, r.took.Seconds())
		switch r.status {
		case "PASS":
			pass++
		default:
			fail++
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed\n", pass, fail)
	return os.WriteFile(e2e.report, []byte(b.String()), 0o644)
}

// --- cluster helpers ----------------------------------------------------

func ptr[T any](v T) *T { return &v }

// poll calls cond every 250 ms until it returns true or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, cond)
}

// createNamespace creates ns with labels and waits until the serviceaccount
// controller has made its "default" ServiceAccount: without it the
// ServiceAccount admission plugin rejects every pod.
func createNamespace(ctx context.Context, t *testing.T, name string, labels map[string]string) {
	t.Helper()
	_, err := e2e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	waitDefaultSA(ctx, t, name)
}

func waitDefaultSA(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := e2e.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: no default ServiceAccount after 60s (is kube-controller-manager running?): %v", ns, err)
	}
}

// podSpec is a minimal pod spec; no kubelet runs, so the image is never
// pulled.
func podSpec() corev1.PodSpec {
	return corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
	}
}

// deploy creates a Deployment whose pod template carries annotations and
// returns the pods kube-controller-manager creates for it (through a
// ReplicaSet, with generateName and, at admission time, no namespace in the
// pod's metadata).
func deploy(ctx context.Context, t *testing.T, ns, name string, replicas int32, annotations map[string]string, mutate func(*corev1.PodSpec)) []corev1.Pod {
	t.Helper()
	spec := podSpec()
	if mutate != nil {
		mutate(&spec)
	}
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       spec,
			},
		},
	}
	if _, err := e2e.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	return waitPods(ctx, t, ns, "app="+name, int(replicas))
}

// waitPods waits until n pods match selector in ns and returns them as
// stored by the API server.
func waitPods(ctx context.Context, t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := poll(ctx, 90*time.Second, func(ctx context.Context) (bool, error) {
		l, err := e2e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods = l.Items
		return len(pods) >= n, nil
	})
	if err != nil {
		t.Fatalf("%s: %d of %d pods (%s) after 90s: %v%s", ns, len(pods), n, selector, err, replicaSetEvents(ctx, ns))
	}
	return pods
}

// replicaSetEvents returns the namespace's warning events, the place where
// kube-controller-manager reports why it could not create pods (an admission
// rejection shows up there with the API server's message).
func replicaSetEvents(ctx context.Context, ns string) string {
	l, err := e2e.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil || len(l.Items) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nwarning events:")
	for _, e := range l.Items {
		fmt.Fprintf(&b, "\n  %s/%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
	}
	return b.String()
}

// createPod creates a bare pod (not through a controller) and returns it as
// stored.
func createPod(ctx context.Context, t *testing.T, ns, name string, annotations map[string]string, mutate func(*corev1.PodSpec)) *corev1.Pod {
	t.Helper()
	p, err := tryCreatePod(ctx, ns, name, annotations, mutate)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	return p
}

func tryCreatePod(ctx context.Context, ns, name string, annotations map[string]string, mutate func(*corev1.PodSpec)) (*corev1.Pod, error) {
	spec := podSpec()
	if mutate != nil {
		mutate(&spec)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations, Labels: map[string]string{"e2e": "bare"}},
		Spec:       spec,
	}
	return e2e.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
}

// --- local processes ----------------------------------------------------

// proc is a process started in its own process group, registered in
// $E2E_DIR/pids so hack/e2e.sh stops it even if the test binary dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func startProc(name, path string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(e2e.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().Format(time.RFC3339), path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	_ = os.WriteFile(p.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	go func() {
		p.done <- cmd.Wait()
		logf.Close()
	}()
	return p, nil
}

func (p *proc) pidFile() string { return filepath.Join(e2e.dir, "pids", p.name+".pid") }

// stop sends SIGTERM to the process group, and SIGKILL after 10 s.
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	defer os.Remove(p.pidFile())
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for 10s; killed", p.name)
	}
}

// exited reports whether the process has ended (and puts the result back).
func (p *proc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// runTool runs a short-lived binary from ./bin and returns its combined
// output; the output is also appended to logs/NAME.log.
func runTool(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e2e.bin, name), args...)
	helm := filepath.Join(e2e.dir, "helm")
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+e2e.kubeconfig,
		// Keep helm's state in the run's temporary directory.
		"HELM_CACHE_HOME="+helm+"/cache", "HELM_CONFIG_HOME="+helm+"/config", "HELM_DATA_HOME="+helm+"/data",
	)
	out, err := cmd.CombinedOutput()
	if f, ferr := os.OpenFile(filepath.Join(e2e.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== %s %s\n%s\n", name, strings.Join(args, " "), out)
		f.Close()
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// servingCert returns the leaf certificate the webhook presents now, verified
// against caFile (a fresh handshake each call).
func servingCert(caFile string) (*x509.Certificate, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA in " + caFile)
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", webhookAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func webhookAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e2e.webhookPort)) }

// waitReady polls GET /readyz over HTTPS, trusting only caFile.
func waitReady(ctx context.Context, caFile string, timeout time.Duration) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var last string
	err = poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		resp, err := hc.Get("https://" + webhookAddr() + "/readyz")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("webhook not ready after %s (last: %s): %w", timeout, last, err)
	}
	return nil
}
