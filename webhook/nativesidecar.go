package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	apiversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
)

// Values of Config.NativeSidecars.
const (
	NativeSidecarsAuto = "auto"
	NativeSidecarsOn   = "on"
	NativeSidecarsOff  = "off"
	// DefaultNativeSidecarRefresh: API server and node upgrades are rare
	// and slow; a pod admitted in the minutes between an upgrade and the
	// next check gets what the old answer gives (see Refresh).
	DefaultNativeSidecarRefresh = 10 * time.Minute
	// nativeSidecarRetry is how often an unknown answer is asked again.
	nativeSidecarRetry = 30 * time.Second
	// FallbackNativeSidecars is the dnsguard_webhook_sidecar_fallbacks_total
	// reason for pods that got dnsconfig mode because native sidecars are
	// not available (or not known to be).
	FallbackNativeSidecars = "native-sidecars-unavailable"
)

// The Kubernetes versions that decide. Native sidecars (KEP-753): alpha in
// 1.28 (gate SidecarContainers off by default), beta and on by default in
// 1.29, GA in 1.33, where the gate can no longer be turned off. Through
// 1.32 an API server with the gate off drops restartPolicy from init
// containers and then rejects the sidecar's startup probe; a kubelet
// without the feature runs the sidecar as a plain init container that never
// exits, so the pod hangs in Init. An API server supports kubelets up to
// three minors older (the version skew policy): from 1.32 on, no supported
// kubelet is older than 1.29.
var (
	nativeSidecarsAlpha  = utilversion.MajorMinor(1, 28)
	nativeSidecarsBeta   = utilversion.MajorMinor(1, 29)
	nativeSidecarsGA     = utilversion.MajorMinor(1, 33)
	kubeletSkewCovered   = utilversion.MajorMinor(1, 32)
	nativeSidecarsPolicy = corev1.ContainerRestartPolicyAlways
)

// NativeSidecarSource tells Decide whether native sidecars may be injected.
type NativeSidecarSource interface {
	// NativeSidecarsUnavailable returns "" when they are available, else
	// why not (or why it is not known), in words for a warning.
	NativeSidecarsUnavailable() string
}

// StaticNativeSidecars is the answer of --native-sidecars=on ("") or off.
type StaticNativeSidecars string

// NativeSidecarsUnavailable implements NativeSidecarSource.
func (s StaticNativeSidecars) NativeSidecarsUnavailable() string { return string(s) }

// staticNativeSidecars is the answer of a setting without a detector: on
// is "", off and auto (nobody asked the API server) are reasons.
func staticNativeSidecars(setting string) string {
	switch setting {
	case NativeSidecarsOn:
		return ""
	case NativeSidecarsOff:
		return "native sidecars are turned off (--native-sidecars=off)"
	}
	return NoAPINativeSidecars
}

// NativeSidecarDetector answers NativeSidecarSource from the API server
// (--native-sidecars=auto): its version, on 1.28-1.32 whether it keeps
// restartPolicy on an init container of a dry-run probe pod, and below 1.32
// whether every Linux node's kubelet is 1.29 or newer. Until the first
// answer, and whenever the API cannot tell, native sidecars count as
// unavailable: a sidecar-mode pod then gets dnsconfig mode, which always
// starts, instead of a pod the API server may reject or that may hang.
type NativeSidecarDetector struct {
	client   kubernetes.Interface
	probeNS  string
	image    string
	interval time.Duration
	log      *slog.Logger

	mu      sync.RWMutex
	why     string
	checked bool
}

// NewNativeSidecarDetector asks through client (give it a request timeout:
// the version call takes no context); probeNS is where the probe pod is
// dry-run created (see ProbeNamespace) and image the probe's image (the
// sidecar's: an image a policy engine lets through is likelier).
func NewNativeSidecarDetector(client kubernetes.Interface, probeNS, image string, interval time.Duration, log *slog.Logger) *NativeSidecarDetector {
	if interval <= 0 {
		interval = DefaultNativeSidecarRefresh
	}
	if log == nil {
		log = slog.Default()
	}
	return &NativeSidecarDetector{client: client, probeNS: probeNS, image: image, interval: interval, log: log,
		why: "native sidecar support not checked yet"}
}

// ProbeNamespace is configured, else the namespace of the pod's service
// account, else "default".
func ProbeNamespace(configured string) string {
	if configured != "" {
		return configured
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// NativeSidecarsUnavailable implements NativeSidecarSource.
func (d *NativeSidecarDetector) NativeSidecarsUnavailable() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.why
}

// Refresh asks once. An error means the answer is unknown; native sidecars
// then count as unavailable until an answer comes, even if an earlier
// check found them: the version can only be trusted as fresh, and a wrong
// "unavailable" costs a warning while a wrong "available" costs pods.
func (d *NativeSidecarDetector) Refresh(ctx context.Context) error {
	why, err := d.detect(ctx)
	if err != nil {
		why = "native sidecar support unknown (" + err.Error() + ")"
	}
	d.mu.Lock()
	old, first := d.why, !d.checked
	d.why, d.checked = why, true
	d.mu.Unlock()
	if first || old != why {
		if why == "" {
			d.log.Info("native sidecars available: sidecar mode injects the resolver", "previous", old)
		} else {
			d.log.Warn("native sidecars not available: sidecar-mode pods get dnsconfig mode", "reason", why, "previous", old)
		}
	}
	return err
}

// Start asks once before it returns, so the first pods get the answer
// rather than the safe default (a slow API server delays the start by the
// client's timeout at most), then asks again every interval (every 30s
// while unknown) until ctx ends.
func (d *NativeSidecarDetector) Start(ctx context.Context) {
	err := d.Refresh(ctx)
	go func() {
		for {
			wait := d.interval
			if err != nil {
				wait = min(nativeSidecarRetry, d.interval)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			err = d.Refresh(ctx)
		}
	}()
}

// detect returns "" when native sidecars are available, a reason when they
// are not, and an error when it cannot tell.
func (d *NativeSidecarDetector) detect(ctx context.Context) (string, error) {
	info, err := d.client.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("ask the API server its version: %w", err)
	}
	v, err := serverVersion(info)
	if err != nil {
		return "", err
	}
	if v.LessThan(nativeSidecarsAlpha) {
		return fmt.Sprintf("API server %s has no native sidecars (Kubernetes 1.29 and newer have them)", info.GitVersion), nil
	}
	if v.LessThan(nativeSidecarsGA) {
		why, err := d.probe(ctx, info.GitVersion, v)
		if why != "" || err != nil {
			return why, err
		}
	}
	if v.LessThan(kubeletSkewCovered) {
		return d.kubelets(ctx)
	}
	return "", nil
}

// serverVersion reads the version the API server reports; GitVersion
// carries the patch and vendor suffixes (v1.29.6-gke.1200), Major/Minor are
// the fallback (some distributions write "29+").
func serverVersion(info *apiversion.Info) (*utilversion.Version, error) {
	if v, err := utilversion.ParseGeneric(info.GitVersion); err == nil {
		return v, nil
	}
	v, err := utilversion.ParseGeneric(strings.TrimSuffix(info.Major, "+") + "." + strings.TrimSuffix(info.Minor, "+"))
	if err != nil {
		return nil, fmt.Errorf("unreadable API server version (gitVersion %q, major %q, minor %q)", info.GitVersion, info.Major, info.Minor)
	}
	return v, nil
}

// probe dry-run creates a pod with a native sidecar: an API server whose
// SidecarContainers gate is off drops restartPolicy from init containers
// before admission, so the pod it returns tells. Nothing is stored. server
// is the version as the API server reports it (for messages), v as detect
// read it.
func (d *NativeSidecarDetector) probe(ctx context.Context, server string, v *utilversion.Version) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	created, err := d.client.CoreV1().Pods(d.probeNS).Create(ctx, probePod(d.image), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return "", fmt.Errorf("dry-run create of a probe pod in namespace %s to check the SidecarContainers gate of API server %s: %w", d.probeNS, server, err)
	}
	if len(created.Spec.InitContainers) == 0 {
		return "", fmt.Errorf("the dry-run probe pod came back from API server %s without its init container", server)
	}
	if rp := created.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != nativeSidecarsPolicy {
		if v.LessThan(nativeSidecarsBeta) {
			return fmt.Sprintf("API server %s has the SidecarContainers feature gate off (alpha in 1.28)", server), nil
		}
		return fmt.Sprintf("API server %s drops restartPolicy from init containers: its SidecarContainers feature gate is off", server), nil
	}
	return "", nil
}

// probePod passes the restricted Pod Security level and quotas on limits,
// and opts out of dnsguard itself.
func probePod(image string) *corev1.Pod {
	always := nativeSidecarsPolicy
	no, yes := false, true
	uid := int64(65532)
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		RunAsNonRoot:             &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("8Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "dnsguard-native-sidecar-probe-",
			Labels:       map[string]string{"app.kubernetes.io/name": "dnsguard", "app.kubernetes.io/component": "native-sidecar-probe"},
			Annotations:  map[string]string{AnnotationMode: ModeOff},
		},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			SecurityContext:              &corev1.PodSecurityContext{RunAsUser: &uid, RunAsNonRoot: &yes},
			InitContainers:               []corev1.Container{{Name: "sidecar", Image: image, RestartPolicy: &always, SecurityContext: sc, Resources: res}},
			Containers:                   []corev1.Container{{Name: "main", Image: image, SecurityContext: sc, Resources: res}},
		},
	}
}

// kubelets returns why native sidecars are unavailable when a Linux node's
// kubelet is older than 1.29 (the pod may be scheduled there), or "".
func (d *NativeSidecarDetector) kubelets(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts := metav1.ListOptions{Limit: 500}
	for {
		nodes, err := d.client.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("list nodes to check their kubelet versions: %w", err)
		}
		for _, n := range nodes.Items {
			if os := n.Status.NodeInfo.OperatingSystem; os != "" && os != "linux" {
				continue
			}
			kv := n.Status.NodeInfo.KubeletVersion
			v, err := utilversion.ParseGeneric(kv)
			if err != nil {
				return "", fmt.Errorf("node %s: unreadable kubelet version %q", n.Name, kv)
			}
			if v.LessThan(nativeSidecarsBeta) {
				return fmt.Sprintf("node %s runs kubelet %s, which runs a native sidecar as an init container that never exits (the pod would hang in Init)", n.Name, kv), nil
			}
		}
		if nodes.Continue == "" {
			return "", nil
		}
		opts.Continue = nodes.Continue
	}
}

// NoAPINativeSidecars is the answer of --native-sidecars=auto when the
// webhook has no API server access.
const NoAPINativeSidecars = "native sidecar support unknown: no API server access to ask (set --native-sidecars=on or off)"
