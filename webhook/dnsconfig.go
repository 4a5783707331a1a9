package webhook

import (
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// clusterSearches are the search domains the kubelet gives a ClusterFirst
// pod in namespace ns, most specific first.
func clusterSearches(ns, domain string) []string {
	return []string{ns + ".svc." + domain, "svc." + domain, domain}
}

// baseSearches are what ClusterFirst gives a pod before its own dnsConfig
// is merged in: the cluster searches, then the node's (as far as the
// webhook knows them: cfg.ExtraSearchDomains).
func baseSearches(ns string, cfg *Config) []string {
	return append(clusterSearches(ns, cfg.ClusterDomain), cfg.ExtraSearchDomains...)
}

// buildDNSConfig merges the pod's own dnsConfig into one that reproduces
// ClusterFirst with servers as nameservers, recording warnings in d.
func buildDNSConfig(pod *corev1.Pod, ns string, servers []string, cfg *Config, d *Decision) *corev1.PodDNSConfig {
	var own corev1.PodDNSConfig
	if pod.Spec.DNSConfig != nil {
		own = *pod.Spec.DNSConfig
	}
	out := &corev1.PodDNSConfig{}
	var dropped []string
	out.Nameservers, dropped = mergeNameservers(servers, own.Nameservers)
	if len(dropped) > 0 {
		d.warnf("a pod may have at most %d nameservers; dropped %s (kept %s)", maxNameservers, strings.Join(dropped, ", "), strings.Join(out.Nameservers, ", "))
	}
	out.Searches, dropped = mergeSearches(baseSearches(ns, cfg), own.Searches)
	if len(dropped) > 0 {
		d.warnf("search domains beyond the API limits (%d entries, %d characters) dropped: %s", maxSearches, maxSearchChars, strings.Join(dropped, " "))
	}
	out.Options = mergeOptions(cfg.DNSOptions, own.Options)
	if n := len(renderSearchLine(out.Searches)); n >= muslMaxLineBytes {
		d.warnf("the resolv.conf search line is %d bytes; musl libc (Alpine) ignores lines of %d bytes or more, so musl containers get no search path at all (short names fail); shorten dnsConfig.searches", n, muslMaxLineBytes)
	}
	if n := len(renderOptionsLine(out.Options)); n >= muslMaxLineBytes {
		d.warnf("the resolv.conf options line is %d bytes; musl libc (Alpine) ignores lines of %d bytes or more, so musl containers lose every option", n, muslMaxLineBytes)
	}
	return out
}

// mergeNameservers returns first then extra, deduplicated (by parsed IP), at
// most maxNameservers, and what did not fit.
func mergeNameservers(first, extra []string) (kept, dropped []string) {
	seen := map[string]bool{}
	for _, s := range append(append([]string{}, first...), extra...) {
		key := s
		if ip := net.ParseIP(s); ip != nil {
			key = ip.String()
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		if len(kept) < maxNameservers {
			kept = append(kept, s)
		} else {
			dropped = append(dropped, s)
		}
	}
	return kept, dropped
}

// mergeSearches returns cluster then the pod's own searches, deduplicated
// (case-insensitive, trailing dot ignored), cut at the first entry that would
// exceed the API limits (32 entries, 2048 characters joined by spaces) so the
// result is always a prefix in order; it also returns what was dropped.
func mergeSearches(cluster, own []string) (kept, dropped []string) {
	seen := map[string]bool{}
	chars := 0
	full := false
	for _, s := range append(append([]string{}, cluster...), own...) {
		key := strings.ToLower(strings.TrimSuffix(s, "."))
		if seen[key] {
			continue
		}
		seen[key] = true
		add := len(s)
		if len(kept) > 0 {
			add++ // the separating space
		}
		if full || len(kept) >= maxSearches || chars+add > maxSearchChars {
			full = true
			dropped = append(dropped, s)
			continue
		}
		kept = append(kept, s)
		chars += add
	}
	return kept, dropped
}

// mergeOptions returns defaults with the pod's own options merged in: an
// option the pod sets keeps its position in defaults but takes the pod's
// value; the pod's other options follow in its order; no name appears twice
// (a later duplicate in the pod's list wins).
func mergeOptions(defaults []DNSOption, own []corev1.PodDNSConfigOption) []corev1.PodDNSConfigOption {
	out := make([]corev1.PodDNSConfigOption, 0, len(defaults)+len(own))
	index := map[string]int{}
	for _, o := range defaults {
		index[o.Name] = len(out)
		out = append(out, corev1.PodDNSConfigOption{Name: o.Name, Value: copyStr(o.Value)})
	}
	for _, o := range own {
		if i, ok := index[o.Name]; ok {
			out[i] = corev1.PodDNSConfigOption{Name: o.Name, Value: copyStr(o.Value)}
			continue
		}
		index[o.Name] = len(out)
		out = append(out, corev1.PodDNSConfigOption{Name: o.Name, Value: copyStr(o.Value)})
	}
	return out
}

func copyStr(p *string) *string {
	if p == nil {
		return nil
	}
	s := *p
	return &s
}

func hasOption(opts []corev1.PodDNSConfigOption, name string) bool {
	for _, o := range opts {
		if o.Name == name {
			return true
		}
	}
	return false
}

func renderSearchLine(searches []string) string {
	if len(searches) == 0 {
		return ""
	}
	return "search " + strings.Join(searches, " ") + "\n"
}

func renderOptionsLine(opts []corev1.PodDNSConfigOption) string {
	if len(opts) == 0 {
		return ""
	}
	parts := make([]string, len(opts))
	for i, o := range opts {
		parts[i] = o.Name
		if o.Value != nil {
			parts[i] += ":" + *o.Value
		}
	}
	return "options " + strings.Join(parts, " ") + "\n"
}

// RenderResolvConf renders c as the kubelet writes resolv.conf.
func RenderResolvConf(c *corev1.PodDNSConfig) string {
	if c == nil {
		return ""
	}
	var b strings.Builder
	for _, ns := range c.Nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	b.WriteString(renderSearchLine(c.Searches))
	b.WriteString(renderOptionsLine(c.Options))
	return b.String()
}

// unknownNodeSearches is the note EffectiveResolvConf adds for ClusterFirst
// pods when the nodes' search domains are not configured: the kubelet
// appends them after the cluster ones, but the webhook cannot see them.
const unknownNodeSearches = "# the kubelet also appends the node's search domains (from its --resolv-conf) after the cluster ones;\n" +
	"# the webhook does not know them unless extraSearchDomains (--extra-search-domains) is set\n"

// EffectiveResolvConf is the resolv.conf a pod gets when the webhook leaves
// it alone, following the kubelet's rules for its dnsPolicy. What comes from
// the node (Default policy, hostNetwork) is unknown here and rendered as a
// comment.
func EffectiveResolvConf(pod *corev1.Pod, ns string, nameservers []string, cfg *Config) string {
	var own corev1.PodDNSConfig
	if pod.Spec.DNSConfig != nil {
		own = *pod.Spec.DNSConfig
	}
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	clusterFirst := policy == corev1.DNSClusterFirstWithHostNet ||
		(policy == corev1.DNSClusterFirst && !pod.Spec.HostNetwork)
	switch {
	case policy == corev1.DNSNone:
		return RenderResolvConf(&own)
	case clusterFirst:
		var b strings.Builder
		if len(nameservers) == 0 && !cfg.NodeLocal.Existing {
			b.WriteString("# cluster DNS address not known yet\n")
		}
		servers, _ := mergeNameservers(cfg.NodeLocal.clusterFirstServers(nameservers), own.Nameservers)
		if ns == "" {
			ns = "default"
		}
		searches, _ := mergeSearches(baseSearches(ns, cfg), own.Searches)
		opts := mergeOptions([]DNSOption{{Name: "ndots", Value: strptr("5")}}, own.Options)
		if len(cfg.ExtraSearchDomains) == 0 {
			b.WriteString(unknownNodeSearches)
		}
		b.WriteString(RenderResolvConf(&corev1.PodDNSConfig{Nameservers: servers, Searches: searches, Options: opts}))
		return b.String()
	default:
		var b strings.Builder
		fmt.Fprintf(&b, "# the node's /etc/resolv.conf (dnsPolicy %s", policy)
		if pod.Spec.HostNetwork {
			b.WriteString(", hostNetwork")
		}
		b.WriteString(")\n")
		if pod.Spec.DNSConfig != nil {
			b.WriteString("# merged with the pod's dnsConfig:\n")
			b.WriteString(RenderResolvConf(&own))
		}
		return b.String()
	}
}
