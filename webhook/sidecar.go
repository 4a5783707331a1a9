package webhook

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Ports and paths the sidecar uses inside the pod's network namespace.
const (
	sidecarListen = "127.0.0.1:53"
	// sidecarHealthPort is where the resolver serves /healthz, /readyz and
	// /metrics on 127.0.0.1; healthPortFor moves it when a container
	// declares it, because the resolver exits when it cannot bind its
	// health listener, and a native sidecar that never starts keeps the
	// whole pod from starting.
	sidecarHealthPort    = 8053
	sidecarHealthPortMax = sidecarHealthPort + 100
	sidecarBinary        = "/resolver"
	// SidecarMetricsPortName names the resolver's metrics port (with
	// sidecar.metricsPort) so a PodMonitor selects it by name; at most 15
	// characters (IANA_SVC_NAME): the API server rejected the former
	// "dnsguard-metrics" (16), found by test/quota's corpus validation.
	SidecarMetricsPortName = "dg-metrics"
)

// healthPortFor returns the resolver's health port for pod: 8053 unless a
// container declares it (TCP: the listener is HTTP), else the first port
// above it that no container declares and that is not avoid (the sidecar's
// metrics port, which the resolver binds on every address, loopback
// included; 0: none). why says what moved it ("" when not moved). ok is
// false only when every candidate is taken.
func healthPortFor(pod *corev1.Pod, avoid int32) (port int32, why string, ok bool) {
	taken := map[int32]string{}
	if avoid > 0 {
		taken[avoid] = SidecarName
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Protocol == corev1.ProtocolUDP {
					continue
				}
				if _, dup := taken[p.ContainerPort]; !dup {
					taken[p.ContainerPort] = c.Name
				}
			}
		}
	}
	owner, busy := taken[sidecarHealthPort]
	if !busy {
		return sidecarHealthPort, "", true
	}
	why = fmt.Sprintf("container %s declares port %d", owner, sidecarHealthPort)
	for p := int32(sidecarHealthPort + 1); p <= sidecarHealthPortMax; p++ {
		if _, busy := taken[p]; !busy {
			return p, why, true
		}
	}
	return 0, why, false
}

// metricsPortBlocker returns why the resolver's metrics port cannot be
// used in pod, or "": a container already declares that TCP port (the
// resolver binds it on the pod IP, so one of them would fail to start; a
// native sidecar that exits keeps the whole pod from starting), or a port
// named SidecarMetricsPortName (the PodMonitor would scrape an ambiguous
// name). Such a pod gets the sidecar without metrics rather than lose its
// DNS cache over observability. Undeclared ports cannot be seen here.
func metricsPortBlocker(pod *corev1.Pod, port int32) string {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Name == SidecarMetricsPortName {
					return fmt.Sprintf("container %s already declares a port named %s", c.Name, SidecarMetricsPortName)
				}
				if p.ContainerPort == port && p.Protocol != corev1.ProtocolUDP && p.Protocol != corev1.ProtocolSCTP {
					return fmt.Sprintf("container %s declares port %d", c.Name, port)
				}
			}
		}
	}
	return ""
}

// validateMetricsPort checks sidecar.metricsPort: 0 (off) or a TCP port
// the resolver does not already use in the pod.
func validateMetricsPort(p int32) error {
	switch {
	case p == 0:
		return nil
	case p < 1 || p > 65535:
		return fmt.Errorf("sidecar metricsPort %d: want 1-65535, or 0 for off", p)
	case p == 53:
		return fmt.Errorf("sidecar metricsPort %d: the resolver answers DNS on 127.0.0.1:53", p)
	case p == sidecarHealthPort:
		return fmt.Errorf("sidecar metricsPort %d: the resolver's health listener uses 127.0.0.1:%d", p, sidecarHealthPort)
	}
	return nil
}

// Reasons a pod asking for sidecar mode gets dnsconfig mode instead (label
// "reason" of dnsguard_webhook_sidecar_fallbacks_total; FallbackNativeSidecars
// is in nativesidecar.go).
const (
	FallbackHostNetwork = "host-network"
	FallbackNameTaken   = "name-taken"
	FallbackPort53      = "port-53"
	FallbackSysctl      = "sysctl"
	FallbackHealthPort  = "health-port"
)

// fallbackReasons are every value of the fallbacks counter's label.
var fallbackReasons = []string{FallbackNativeSidecars, FallbackHostNetwork, FallbackNameTaken, FallbackPort53, FallbackSysctl, FallbackHealthPort}

// sidecarBlocker returns why the resolver cannot be injected into pod (a
// Fallback* reason and the words for the warning), or "", "".
func sidecarBlocker(pod *corev1.Pod) (reason, why string) {
	if pod.Spec.HostNetwork {
		// The sidecar would bind the node's 127.0.0.1:53 and the sysctl is
		// not allowed in the host network namespace.
		return FallbackHostNetwork, "hostNetwork pod"
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == SidecarName {
				return FallbackNameTaken, fmt.Sprintf("a container is already named %s", SidecarName)
			}
			for _, p := range c.Ports {
				if p.ContainerPort == 53 {
					return FallbackPort53, fmt.Sprintf("container %s declares port 53", c.Name)
				}
			}
		}
	}
	if v, ok := sysctlValue(pod, sysctlUnprivilegedMin); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return FallbackSysctl, fmt.Sprintf("pod sysctl %s=%q is not a number", sysctlUnprivilegedMin, v)
		}
		if n > 53 {
			return FallbackSysctl, fmt.Sprintf("pod sysctl %s=%d keeps port 53 privileged", sysctlUnprivilegedMin, n)
		}
	}
	return "", ""
}

func sysctlValue(pod *corev1.Pod, name string) (string, bool) {
	if pod.Spec.SecurityContext == nil {
		return "", false
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		if s.Name == name {
			return s.Value, true
		}
	}
	return "", false
}

func hasSysctl(pod *corev1.Pod, name string) bool {
	_, ok := sysctlValue(pod, name)
	return ok
}

func boolptr(b bool) *bool { return &b }

// sidecarContainer is the resolver as a native sidecar: an init container
// with restartPolicy Always, which the kubelet starts (and waits for its
// startup probe) before the next init container and the app containers, and
// keeps running beside them.
//
// Binding 127.0.0.1:53 as non-root: the pod gets the namespaced, "safe"
// sysctl net.ipv4.ip_unprivileged_port_start=53 rather than the
// NET_BIND_SERVICE capability, because a non-root process does not get an
// added capability in its effective set without ambient capabilities, which
// Kubernetes does not set. So the container drops ALL capabilities.
//
// The probes are exec probes: kubelet httpGet probes go to the pod IP, while
// the resolver listens on loopback only.
//
// healthPort is the resolver's loopback health port (see healthPortFor).
// metricsPort, when not 0, makes the resolver serve /metrics on the pod IP
// there, declared as the named port a PodMonitor scrapes; the flag goes
// before sidecar.extraArgs, which therefore still win.
func sidecarContainer(cfg *Config, upstreams []string, healthPort, metricsPort int32) corev1.Container {
	args := []string{"--listen=" + sidecarListen}
	for _, u := range upstreams {
		args = append(args, "--upstream="+net.JoinHostPort(u, "53"))
	}
	args = append(args, "--health-listen="+net.JoinHostPort("127.0.0.1", strconv.Itoa(int(healthPort))))
	var ports []corev1.ContainerPort
	if metricsPort > 0 {
		args = append(args, "--metrics-listen=:"+strconv.Itoa(int(metricsPort)))
		ports = []corev1.ContainerPort{{Name: SidecarMetricsPortName, ContainerPort: metricsPort, Protocol: corev1.ProtocolTCP}}
	}
	args = append(args, cfg.Sidecar.ExtraArgs...)
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
				Command: []string{sidecarBinary, "probe", "--server=" + sidecarListen},
			}},
			PeriodSeconds:    period,
			TimeoutSeconds:   2,
			FailureThreshold: failures,
		}
	}
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{
		Name:            SidecarName,
		Image:           cfg.Sidecar.Image,
		ImagePullPolicy: cfg.Sidecar.ImagePullPolicy,
		Command:         []string{sidecarBinary},
		Args:            args,
		Ports:           ports,
		RestartPolicy:   &always,
		Resources:       *cfg.Sidecar.Resources.DeepCopy(),
		// Up to 30 s for the first answer, checked every second so the app
		// containers start as soon as DNS is up.
		StartupProbe:   probe(1, 30),
		ReadinessProbe: probe(10, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             boolptr(true),
			RunAsUser:                sidecarUID(cfg),
			RunAsGroup:               sidecarUID(cfg),
			ReadOnlyRootFilesystem:   boolptr(true),
			AllowPrivilegeEscalation: boolptr(false),
			Privileged:               boolptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// sidecarUID is the UID and GID the resolver runs as; nil when
// sidecar.runAsUser is 0, which leaves them to the platform: OpenShift's
// restricted SCC assigns a UID from the namespace's range and rejects a pod
// asking for another. runAsNonRoot stays true, so the kubelet still refuses
// to run the resolver as root.
func sidecarUID(cfg *Config) *int64 {
	if cfg.Sidecar.RunAsUser == 0 {
		return nil
	}
	uid := cfg.Sidecar.RunAsUser
	return &uid
}

// sidecarPullSecrets returns the configured sidecar.imagePullSecrets that
// pod does not list yet. Without them a pod pulling its own images from a
// public registry could not start once the resolver image comes from a
// private one. Names the pod already has are not repeated, so applying the
// result twice changes nothing.
func sidecarPullSecrets(pod *corev1.Pod, cfg *Config) []corev1.LocalObjectReference {
	var out []corev1.LocalObjectReference
	for _, name := range cfg.Sidecar.ImagePullSecrets {
		has := func(r corev1.LocalObjectReference) bool { return r.Name == name }
		if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, has) && !slices.ContainsFunc(out, has) {
			out = append(out, corev1.LocalObjectReference{Name: name})
		}
	}
	return out
}

// validatePullSecrets checks sidecar.imagePullSecrets: Secret names, once each.
func validatePullSecrets(names []string) error {
	var errs []error
	seen := map[string]bool{}
	for _, n := range names {
		if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("sidecar imagePullSecrets %q: %s", n, strings.Join(msgs, "; ")))
		}
		if seen[n] {
			errs = append(errs, fmt.Errorf("sidecar imagePullSecrets %q appears twice", n))
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}
