package webhook

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Skip reasons: why a pod was left alone. They are metric label values and
// appear in /explain, so keep them short and stable.
const (
	SkipAlreadyInjected   = "already-injected"
	SkipMirrorPod         = "mirror-pod"
	SkipModeOff           = "mode-off"
	SkipWindows           = "windows"
	SkipDNSPolicyDefault  = "dns-policy-default"
	SkipDNSPolicyNone     = "dns-policy-none"
	SkipDNSPolicyUnknown  = "dns-policy-unknown"
	SkipHostNetwork       = "host-network-cluster-first"
	SkipNoNamespace       = "no-namespace"
	SkipNoNameservers     = "no-nameservers"
	SkipUndecodable       = "undecodable"
	SkipNotPodCreate      = "not-pod-create"
	SkipInternalError     = "internal-error"
	warningPrefix         = "dnsguard: "
	labelOS               = "kubernetes.io/os"
	maxNameservers        = 3
	maxSearches           = 32
	maxSearchChars        = 2048
	muslMaxLineBytes      = 256
	sysctlUnprivilegedMin = "net.ipv4.ip_unprivileged_port_start"
)

// Env is what the decision needs to know besides the pod and the static
// configuration; it is gathered per admission by the server.
type Env struct {
	// Namespace of the pod: its metadata, else the AdmissionRequest's.
	Namespace string
	// NamespaceDefaultMode is the namespace's dnsguard.io/default-mode
	// annotation ("" when absent or unknown).
	NamespaceDefaultMode string
	// Nameservers are the cluster DNS addresses (configured or discovered).
	Nameservers []string
	// NamespaceAnnotations are the namespace's annotations, for the
	// per-namespace sidecar resource annotations (nil when unknown).
	NamespaceAnnotations map[string]string
	// NativeSidecarsUnavailable says why native sidecars cannot be
	// injected ("" when they can; see NativeSidecarSource).
	NativeSidecarsUnavailable string
}

// Decision is what the webhook does to one pod. It is computed without side
// effects by Decide; patchFor writes it as a JSONPatch against the JSON the
// API server sent.
type Decision struct {
	// Mode is the mode applied (dnsconfig or sidecar), or for a skipped pod
	// off — except already-injected pods, which report the marker's mode.
	Mode string
	// Reason explains the choice in one sentence.
	Reason string
	// Skip is the skip reason; empty when the pod is mutated.
	Skip string
	// Warnings are returned to the user as admission warnings.
	Warnings []string
	// DNSConfig replaces the pod's dnsConfig (with dnsPolicy None).
	DNSConfig *corev1.PodDNSConfig
	// Sidecar is prepended to initContainers in sidecar mode.
	Sidecar *corev1.Container
	// Sysctl is appended to the pod's securityContext.sysctls when set.
	Sysctl *corev1.Sysctl
	// PullSecrets are appended to spec.imagePullSecrets (sidecar mode: the
	// configured sidecar.imagePullSecrets the pod lacks).
	PullSecrets []corev1.LocalObjectReference
	// Fallback is why a pod asking for sidecar mode got dnsconfig mode (a
	// Fallback* reason, the metric label), or "".
	Fallback string
}

// Mutates reports whether the decision changes the pod.
func (d *Decision) Mutates() bool { return d.Skip == "" }

func (d *Decision) warnf(format string, args ...any) {
	d.Warnings = append(d.Warnings, warningPrefix+fmt.Sprintf(format, args...))
}

func skip(d Decision, reason, why string) Decision {
	d.Skip = reason
	if d.Mode == "" {
		d.Mode = ModeOff
	}
	d.Reason = why
	d.DNSConfig, d.Sidecar, d.Sysctl = nil, nil, nil
	return d
}

// Decide chooses what to do with pod. The rules, in order:
//
//  1. a pod already marked dnsguard.io/injected is left alone (reinvocation);
//  2. mirror pods are left alone (the kubelet owns them);
//  3. the mode is the pod annotation, else the namespace default, else the
//     configured default; an invalid value is ignored with a warning; off
//     leaves the pod alone;
//  4. Windows pods (nodeSelector kubernetes.io/os=windows, spec.os.name, or
//     a required node affinity that rules out kubernetes.io/os=linux) are
//     left alone: Windows has no resolv.conf semantics to tune;
//  5. dnsPolicy Default or None: the user chose DNS explicitly, left alone;
//     hostNetwork with ClusterFirst behaves like Default, left alone;
//     ClusterFirstWithHostNet on hostNetwork is tuned, in dnsconfig mode only;
//  6. sidecar mode falls back to dnsconfig (with a warning) where native
//     sidecars are not available (or not known to be: env), and where the
//     sidecar cannot bind 127.0.0.1:53: hostNetwork, a container declaring port 53,
//     a pod sysctl ip_unprivileged_port_start above 53, or a container
//     already named dnsguard-resolver; a container declaring the health
//     port 8053 moves the resolver's health listener to the next free port
//     (with a warning) instead. With sidecar.metricsPort set, a pod whose
//     container declares that TCP port (or a port named dg-metrics)
//     gets the sidecar without metrics, with a warning.
func Decide(pod *corev1.Pod, env Env, cfg *Config) Decision {
	var d Decision
	if m, ok := pod.Annotations[AnnotationInjected]; ok {
		d.Mode = m
		if !ValidMode(m) {
			d.Mode = ModeOff
		}
		return skip(d, SkipAlreadyInjected, fmt.Sprintf("already patched (%s=%q); reinvocations get an empty patch", AnnotationInjected, m))
	}
	if _, ok := pod.Annotations[annotationMirror]; ok {
		return skip(d, SkipMirrorPod, "mirror pod of a static pod: the kubelet ignores API changes to it")
	}

	mode, source := chooseMode(pod, env, cfg, &d)
	if mode == ModeOff {
		return skip(d, SkipModeOff, "mode off ("+source+")")
	}
	if isWindows(pod) {
		return skip(d, SkipWindows, "Windows pod: resolv.conf tuning does not apply")
	}
	switch pod.Spec.DNSPolicy {
	case "", corev1.DNSClusterFirst:
		if pod.Spec.HostNetwork {
			return skip(d, SkipHostNetwork, "hostNetwork with dnsPolicy ClusterFirst uses the node's resolv.conf (like Default); set ClusterFirstWithHostNet to opt in")
		}
	case corev1.DNSClusterFirstWithHostNet:
	case corev1.DNSDefault:
		return skip(d, SkipDNSPolicyDefault, "dnsPolicy Default: the pod uses the node's resolv.conf by choice")
	case corev1.DNSNone:
		return skip(d, SkipDNSPolicyNone, "dnsPolicy None: the pod brings its own dnsConfig")
	default:
		return skip(d, SkipDNSPolicyUnknown, fmt.Sprintf("unknown dnsPolicy %q", pod.Spec.DNSPolicy))
	}
	ns := pod.Namespace
	if ns == "" {
		ns = env.Namespace
	}
	if ns == "" {
		d.warnf("pod left unchanged: its namespace is unknown, so the cluster search path cannot be built")
		return skip(d, SkipNoNamespace, "namespace unknown")
	}
	if len(env.Nameservers) == 0 {
		d.warnf("pod left unchanged: the cluster DNS address is not known yet")
		return skip(d, SkipNoNameservers, "cluster DNS nameservers not known yet")
	}

	healthPort := int32(sidecarHealthPort)
	metricsPort := cfg.Sidecar.MetricsPort
	if mode == ModeSidecar {
		reason, why := FallbackNativeSidecars, env.NativeSidecarsUnavailable
		if why == "" {
			reason, why = sidecarBlocker(pod)
		}
		if why == "" && metricsPort > 0 {
			if mwhy := metricsPortBlocker(pod, metricsPort); mwhy != "" {
				d.warnf("%s, the resolver's metrics port; the sidecar is injected without metrics (not scraped)", mwhy)
				metricsPort = 0
			}
		}
		if why == "" {
			port, moved, ok := healthPortFor(pod, metricsPort)
			switch {
			case !ok:
				reason = FallbackHealthPort
				why = fmt.Sprintf("%s and ports %d-%d are declared too, so the resolver's health listener has no free port", moved, sidecarHealthPort+1, sidecarHealthPortMax)
			case moved != "":
				d.warnf("%s, which the resolver's health listener uses; moved it to 127.0.0.1:%d", moved, port)
			}
			healthPort = port
		}
		if why != "" {
			d.warnf("sidecar mode not possible (%s); using dnsconfig mode instead", why)
			mode = ModeDNSConfig
			d.Fallback = reason
			source += "; sidecar impossible: " + why
		}
	}
	d.Mode = mode
	d.Reason = mode + " mode (" + source + ")"

	upstreams, skipped := cfg.NodeLocal.upstreams(env.Nameservers)
	if skipped != "" {
		d.warnf("%s", skipped)
	}
	servers := upstreams
	if mode == ModeSidecar {
		servers = []string{"127.0.0.1"}
		if cfg.Sidecar.Fallback {
			servers = append(servers, env.Nameservers...)
		}
	}
	d.DNSConfig = buildDNSConfig(pod, ns, servers, cfg, &d)
	if mode == ModeSidecar {
		c := sidecarContainer(cfg, upstreams, healthPort, metricsPort)
		c.Resources = sidecarResources(pod, env.NamespaceAnnotations, cfg, &d)
		d.Sidecar = &c
		d.PullSecrets = sidecarPullSecrets(pod, cfg)
		if !hasSysctl(pod, sysctlUnprivilegedMin) {
			d.Sysctl = &corev1.Sysctl{Name: sysctlUnprivilegedMin, Value: "53"}
		}
		if cfg.Sidecar.Fallback && looksMusl(pod) {
			d.warnf("musl (Alpine) images query all nameservers at once, so the fallback nameserver %s also receives every query", strings.Join(env.Nameservers, ","))
		}
	} else if hasOption(d.DNSConfig.Options, "single-request-reopen") && looksMusl(pod) {
		d.warnf("musl libc (Alpine) ignores single-request-reopen; use %s=%s for musl images", AnnotationMode, ModeSidecar)
	}
	return d
}

// chooseMode returns the mode for pod and where it came from.
func chooseMode(pod *corev1.Pod, env Env, cfg *Config, d *Decision) (mode, source string) {
	if m, ok := pod.Annotations[AnnotationMode]; ok {
		if ValidMode(m) {
			return m, "pod annotation " + AnnotationMode
		}
		d.warnf("ignoring invalid %s=%q (want off, dnsconfig or sidecar)", AnnotationMode, m)
	}
	if m := env.NamespaceDefaultMode; m != "" {
		if ValidMode(m) {
			return m, "namespace annotation " + AnnotationNamespaceDefaultMode
		}
		d.warnf("ignoring invalid namespace annotation %s=%q (want off, dnsconfig or sidecar)", AnnotationNamespaceDefaultMode, m)
	}
	return cfg.DefaultMode, "default mode"
}

// isWindows reports whether pod can only run on Windows nodes: through
// spec.os, nodeSelector kubernetes.io/os=windows, or a required node affinity
// whose every term keeps kubernetes.io/os away from linux.
func isWindows(pod *corev1.Pod) bool {
	if strings.EqualFold(pod.Spec.NodeSelector[labelOS], "windows") {
		return true
	}
	if pod.Spec.OS != nil && strings.EqualFold(string(pod.Spec.OS.Name), "windows") {
		return true
	}
	return affinityExcludesLinux(pod.Spec.Affinity)
}

// affinityExcludesLinux reports whether the required node affinity rules
// out Linux nodes. The terms of requiredDuringScheduling are ORed, so every
// term must exclude Linux; within a term the expressions are ANDed, so one
// expression on kubernetes.io/os that excludes linux is enough: In with a
// value list without linux (e.g. [windows]) or NotIn with linux. Anything
// else (no terms, a term without an os expression, In [linux, windows])
// may schedule on Linux and is mutated as before.
func affinityExcludesLinux(a *corev1.Affinity) bool {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return false
	}
	for _, term := range terms {
		excludes := false
		for _, e := range term.MatchExpressions {
			if e.Key != labelOS {
				continue
			}
			hasLinux := false
			for _, v := range e.Values {
				if strings.EqualFold(v, "linux") {
					hasLinux = true
				}
			}
			switch e.Operator {
			case corev1.NodeSelectorOpIn:
				excludes = excludes || (len(e.Values) > 0 && !hasLinux)
			case corev1.NodeSelectorOpNotIn:
				excludes = excludes || hasLinux
			}
		}
		if !excludes {
			return false
		}
	}
	return true
}

// looksMusl guesses from image references whether a container uses musl
// libc. It can only catch the common cases (Alpine-based tags); it decides
// nothing but whether to warn.
func looksMusl(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			img := strings.ToLower(c.Image)
			if strings.Contains(img, "alpine") || strings.Contains(img, "musl") {
				return true
			}
		}
	}
	return false
}
