package webhook

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pod builds a defaulted ClusterFirst pod; opts adjust it.
func pod(opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-"},
		Spec: corev1.PodSpec{
			DNSPolicy:  corev1.DNSClusterFirst,
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func annotate(k, v string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func policy(pol corev1.DNSPolicy) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.DNSPolicy = pol }
}

func hostNet(p *corev1.Pod) { p.Spec.HostNetwork = true }

func dnsCfg(c corev1.PodDNSConfig) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.DNSConfig = &c }
}

func sysctl(name, value string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Spec.SecurityContext == nil {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{}
		}
		p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: name, Value: value})
	}
}

func image(img string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Image = img }
}

// osExpr is a node selector requirement on kubernetes.io/os.
func osExpr(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: "kubernetes.io/os", Operator: op, Values: values}
}

var hostExpr = corev1.NodeSelectorRequirement{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpExists}

// osAffinity adds one required node affinity term made of exprs.
func osAffinity(exprs ...corev1.NodeSelectorRequirement) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}}}
		}
		ns := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		ns.NodeSelectorTerms = append(ns.NodeSelectorTerms, corev1.NodeSelectorTerm{MatchExpressions: exprs})
	}
}

var testEnv = Env{Namespace: "shop", Nameservers: []string{"10.96.0.10"}}

func TestDecideModesAndSkips(t *testing.T) {
	cases := []struct {
		name     string
		pod      *corev1.Pod
		env      Env
		cfg      func(*Config)
		wantMode string
		wantSkip string
		warn     string // substring one warning must contain; "" means no warnings
	}{
		{name: "default mode dnsconfig", pod: pod(), wantMode: ModeDNSConfig},
		{name: "empty dnsPolicy means ClusterFirst", pod: pod(policy("")), wantMode: ModeDNSConfig},
		{name: "flag default sidecar", pod: pod(), cfg: func(c *Config) { c.DefaultMode = ModeSidecar }, wantMode: ModeSidecar},
		{name: "flag default off", pod: pod(), cfg: func(c *Config) { c.DefaultMode = ModeOff }, wantMode: ModeOff, wantSkip: SkipModeOff},
		{name: "namespace default beats flag", pod: pod(), env: Env{NamespaceDefaultMode: ModeSidecar}, wantMode: ModeSidecar},
		{name: "namespace default off", pod: pod(), env: Env{NamespaceDefaultMode: ModeOff}, wantMode: ModeOff, wantSkip: SkipModeOff},
		{name: "pod annotation beats namespace", pod: pod(annotate(AnnotationMode, ModeDNSConfig)), env: Env{NamespaceDefaultMode: ModeSidecar}, wantMode: ModeDNSConfig},
		{name: "pod annotation off beats namespace", pod: pod(annotate(AnnotationMode, ModeOff)), env: Env{NamespaceDefaultMode: ModeSidecar}, wantMode: ModeOff, wantSkip: SkipModeOff},
		{name: "invalid pod annotation falls to namespace", pod: pod(annotate(AnnotationMode, "fast")), env: Env{NamespaceDefaultMode: ModeSidecar}, wantMode: ModeSidecar, warn: `dnsguard.io/mode="fast"`},
		{name: "invalid namespace annotation falls to flag", pod: pod(), env: Env{NamespaceDefaultMode: "SIDECAR"}, wantMode: ModeDNSConfig, warn: `default-mode="SIDECAR"`},
		{name: "already injected", pod: pod(annotate(AnnotationInjected, ModeSidecar)), wantMode: ModeSidecar, wantSkip: SkipAlreadyInjected},
		{name: "already injected with garbage marker", pod: pod(annotate(AnnotationInjected, "yes")), wantMode: ModeOff, wantSkip: SkipAlreadyInjected},
		{name: "mirror pod", pod: pod(annotate("kubernetes.io/config.mirror", "abc")), wantMode: ModeOff, wantSkip: SkipMirrorPod},
		{name: "windows nodeSelector", pod: pod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"} }), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "linux nodeSelector is fine", pod: pod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"} }), wantMode: ModeDNSConfig},
		{name: "windows spec.os", pod: pod(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "windows nodeAffinity In [windows]", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "windows"))), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "windows nodeAffinity In [Windows] case-insensitive", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "Windows"))), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "windows nodeAffinity NotIn [linux]", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpNotIn, "linux"))), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "windows nodeAffinity every term", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "windows")), osAffinity(osExpr(corev1.NodeSelectorOpIn, "windows"), hostExpr)), wantMode: ModeOff, wantSkip: SkipWindows},
		{name: "nodeAffinity In [linux, windows] may be linux", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "linux", "windows"))), wantMode: ModeDNSConfig},
		{name: "nodeAffinity In [linux]", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "linux"))), wantMode: ModeDNSConfig},
		{name: "nodeAffinity NotIn [windows]", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpNotIn, "windows"))), wantMode: ModeDNSConfig},
		{name: "nodeAffinity one term windows, one term any os", pod: pod(osAffinity(osExpr(corev1.NodeSelectorOpIn, "windows")), osAffinity(hostExpr)), wantMode: ModeDNSConfig},
		{name: "nodeAffinity term without os", pod: pod(osAffinity(hostExpr)), wantMode: ModeDNSConfig},
		{name: "nodeAffinity preferred windows only", pod: pod(func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
				{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{osExpr(corev1.NodeSelectorOpIn, "windows")}}}}}}
		}), wantMode: ModeDNSConfig},
		{name: "nodeAffinity with no terms", pod: pod(func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}}}
		}), wantMode: ModeDNSConfig},
		{name: "dnsPolicy Default", pod: pod(policy(corev1.DNSDefault)), wantMode: ModeOff, wantSkip: SkipDNSPolicyDefault},
		{name: "dnsPolicy None", pod: pod(policy(corev1.DNSNone)), wantMode: ModeOff, wantSkip: SkipDNSPolicyNone},
		{name: "dnsPolicy unknown", pod: pod(policy("Weird")), wantMode: ModeOff, wantSkip: SkipDNSPolicyUnknown},
		{name: "hostNetwork ClusterFirst", pod: pod(hostNet), wantMode: ModeOff, wantSkip: SkipHostNetwork},
		{name: "hostNetwork ClusterFirstWithHostNet", pod: pod(hostNet, policy(corev1.DNSClusterFirstWithHostNet)), wantMode: ModeDNSConfig},
		{name: "hostNetwork never sidecar", pod: pod(hostNet, policy(corev1.DNSClusterFirstWithHostNet), annotate(AnnotationMode, ModeSidecar)), wantMode: ModeDNSConfig, warn: "hostNetwork"},
		{name: "ClusterFirstWithHostNet without hostNetwork", pod: pod(policy(corev1.DNSClusterFirstWithHostNet)), wantMode: ModeDNSConfig},
		{name: "no namespace anywhere", pod: pod(), env: Env{Namespace: "-"}, wantMode: ModeOff, wantSkip: SkipNoNamespace, warn: "namespace is unknown"},
		{name: "no nameservers yet", pod: pod(), env: Env{Nameservers: []string{}}, wantMode: ModeOff, wantSkip: SkipNoNameservers, warn: "not known yet"},
		{name: "sidecar port 53 in container", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolTCP}}
		}), wantMode: ModeDNSConfig, warn: "declares port 53"},
		{name: "sidecar port 53 in init container", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 53}}}}
		}), wantMode: ModeDNSConfig, warn: "container init declares port 53"},
		{name: "sidecar name taken", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: SidecarName}}
		}), wantMode: ModeDNSConfig, warn: "already named"},
		{name: "sidecar health port 8053 taken moves it", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8053}}
		}), wantMode: ModeSidecar, warn: "moved it to 127.0.0.1:8054"},
		{name: "sidecar health port 8053 udp is no conflict", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8053, Protocol: corev1.ProtocolUDP}}
		}), wantMode: ModeSidecar},
		{name: "sidecar health ports all taken falls back", pod: pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
			for port := int32(8053); port <= 8153; port++ {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port})
			}
		}), wantMode: ModeDNSConfig, warn: "health listener has no free port"},
		{name: "sidecar sysctl 1024", pod: pod(annotate(AnnotationMode, ModeSidecar), sysctl(sysctlUnprivilegedMin, "1024")), wantMode: ModeDNSConfig, warn: "=1024"},
		{name: "sidecar sysctl 54", pod: pod(annotate(AnnotationMode, ModeSidecar), sysctl(sysctlUnprivilegedMin, "54")), wantMode: ModeDNSConfig, warn: "=54"},
		{name: "sidecar sysctl 53 ok", pod: pod(annotate(AnnotationMode, ModeSidecar), sysctl(sysctlUnprivilegedMin, "53")), wantMode: ModeSidecar},
		{name: "sidecar sysctl not a number", pod: pod(annotate(AnnotationMode, ModeSidecar), sysctl(sysctlUnprivilegedMin, "low")), wantMode: ModeDNSConfig, warn: "not a number"},
		{name: "alpine dnsconfig warns", pod: pod(image("alpine:3.20")), wantMode: ModeDNSConfig, warn: "ignores single-request-reopen"},
		{name: "alpine without single-request-reopen quiet", pod: pod(image("alpine:3.20")), cfg: func(c *Config) { c.DNSOptions = c.DNSOptions[:3] }, wantMode: ModeDNSConfig},
		{name: "alpine sidecar with fallback warns", pod: pod(image("python:3.12-alpine"), annotate(AnnotationMode, ModeSidecar)), wantMode: ModeSidecar, warn: "fallback nameserver"},
		{name: "alpine sidecar without fallback quiet", pod: pod(image("python:3.12-alpine"), annotate(AnnotationMode, ModeSidecar)), cfg: func(c *Config) { c.Sidecar.Fallback = false }, wantMode: ModeSidecar},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			env := testEnv
			if tc.env.NamespaceDefaultMode != "" {
				env.NamespaceDefaultMode = tc.env.NamespaceDefaultMode
			}
			if tc.env.Namespace == "-" {
				env.Namespace = ""
			}
			if tc.env.Nameservers != nil {
				env.Nameservers = tc.env.Nameservers
			}
			d := Decide(tc.pod, env, &cfg)
			if d.Mode != tc.wantMode || d.Skip != tc.wantSkip {
				t.Fatalf("mode %q skip %q (reason %q), want mode %q skip %q", d.Mode, d.Skip, d.Reason, tc.wantMode, tc.wantSkip)
			}
			if d.Reason == "" {
				t.Errorf("empty reason")
			}
			if tc.warn == "" && len(d.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", d.Warnings)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q lack %q", d.Warnings, tc.warn)
			}
			for _, w := range d.Warnings {
				if !strings.HasPrefix(w, warningPrefix) {
					t.Errorf("warning %q lacks the %q prefix", w, warningPrefix)
				}
			}
			if d.Mutates() != (d.DNSConfig != nil) {
				t.Errorf("Mutates()=%v but DNSConfig=%v", d.Mutates(), d.DNSConfig)
			}
			if (d.Sidecar != nil) != (d.Mode == ModeSidecar && d.Mutates()) {
				t.Errorf("sidecar present=%v in mode %s", d.Sidecar != nil, d.Mode)
			}
		})
	}
}

func TestDecideDNSConfig(t *testing.T) {
	five, two, one := "5", "2", "1"
	cases := []struct {
		name        string
		pod         *corev1.Pod
		env         Env
		cfg         func(*Config)
		nameservers []string
		searches    []string
		options     string
	}{
		{
			name:        "plain",
			pod:         pod(),
			nameservers: []string{"10.96.0.10"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name:        "metadata namespace wins over request namespace",
			pod:         pod(func(p *corev1.Pod) { p.Namespace = "payments" }),
			nameservers: []string{"10.96.0.10"},
			searches:    []string{"payments.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name:        "custom domain and two cluster nameservers",
			pod:         pod(),
			env:         Env{Nameservers: []string{"fd00::a", "10.96.0.10"}},
			cfg:         func(c *Config) { c.ClusterDomain = "corp.internal" },
			nameservers: []string{"fd00::a", "10.96.0.10"},
			searches:    []string{"shop.svc.corp.internal", "svc.corp.internal", "corp.internal"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name: "pod values merged, pod option values win",
			pod: pod(dnsCfg(corev1.PodDNSConfig{
				Nameservers: []string{"1.1.1.1", "10.96.0.10"},
				Searches:    []string{"Shop.svc.cluster.local.", "corp.example.com"},
				Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}, {Name: "timeout", Value: &one}, {Name: "edns0"}},
			})),
			nameservers: []string{"10.96.0.10", "1.1.1.1"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example.com"},
			options:     "ndots:2 timeout:1 attempts:3 single-request-reopen edns0",
		},
		{
			name:        "ipv6 duplicate nameserver spelled differently",
			pod:         pod(dnsCfg(corev1.PodDNSConfig{Nameservers: []string{"fd00:0:0::a"}})),
			env:         Env{Nameservers: []string{"fd00::a"}},
			nameservers: []string{"fd00::a"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name:        "sidecar: loopback first then cluster",
			pod:         pod(annotate(AnnotationMode, ModeSidecar), dnsCfg(corev1.PodDNSConfig{Nameservers: []string{"8.8.8.8", "9.9.9.9"}})),
			nameservers: []string{"127.0.0.1", "10.96.0.10", "8.8.8.8"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name:        "sidecar without fallback: loopback only",
			pod:         pod(annotate(AnnotationMode, ModeSidecar)),
			cfg:         func(c *Config) { c.Sidecar.Fallback = false },
			nameservers: []string{"127.0.0.1"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 timeout:2 attempts:3 single-request-reopen",
		},
		{
			name:        "configured options replace the defaults",
			pod:         pod(dnsCfg(corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &five}}})),
			cfg:         func(c *Config) { c.DNSOptions = []DNSOption{{Name: "ndots", Value: &two}, {Name: "use-vc"}} },
			nameservers: []string{"10.96.0.10"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			options:     "ndots:5 use-vc",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			env := testEnv
			if tc.env.Nameservers != nil {
				env.Nameservers = tc.env.Nameservers
			}
			d := Decide(tc.pod, env, &cfg)
			if !d.Mutates() {
				t.Fatalf("skipped: %s", d.Reason)
			}
			c := d.DNSConfig
			if !reflect.DeepEqual(c.Nameservers, tc.nameservers) {
				t.Errorf("nameservers %q, want %q", c.Nameservers, tc.nameservers)
			}
			if !reflect.DeepEqual(c.Searches, tc.searches) {
				t.Errorf("searches %q, want %q", c.Searches, tc.searches)
			}
			if got := strings.TrimSuffix(strings.TrimPrefix(renderOptionsLine(c.Options), "options "), "\n"); got != tc.options {
				t.Errorf("options %q, want %q", got, tc.options)
			}
		})
	}
}

func TestNameserverLimitWarns(t *testing.T) {
	cfg := testConfig()
	d := Decide(pod(dnsCfg(corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1", "8.8.8.8", "9.9.9.9"}})), testEnv, &cfg)
	if want := []string{"10.96.0.10", "1.1.1.1", "8.8.8.8"}; !reflect.DeepEqual(d.DNSConfig.Nameservers, want) {
		t.Fatalf("nameservers %q, want %q", d.DNSConfig.Nameservers, want)
	}
	if len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "dropped 9.9.9.9") {
		t.Fatalf("warnings %q: want one naming 9.9.9.9", d.Warnings)
	}
}

func TestSearchLimits(t *testing.T) {
	cluster := clusterSearches("shop", "cluster.local")
	t.Run("32 entries", func(t *testing.T) {
		var own []string
		for i := range 40 {
			own = append(own, fmt.Sprintf("s%d.example", i))
		}
		kept, dropped := mergeSearches(cluster, own)
		if len(kept) != 32 || kept[0] != "shop.svc.cluster.local" || kept[31] != "s28.example" {
			t.Fatalf("kept %d entries (%q ... %q), want 32 from the cluster ones to s28.example", len(kept), kept[0], kept[len(kept)-1])
		}
		if len(dropped) != 11 || dropped[0] != "s29.example" {
			t.Fatalf("dropped %q", dropped)
		}
	})
	t.Run("2048 characters", func(t *testing.T) {
		long := strings.Repeat("a", 62) + "." + strings.Repeat("b", 62) + "." + strings.Repeat("c", 62) + ".example" // 196 chars
		var own []string
		for i := range 12 {
			own = append(own, fmt.Sprintf("%s%d", long, i))
		}
		kept, dropped := mergeSearches(cluster, own)
		if n := len(strings.Join(kept, " ")); n > maxSearchChars {
			t.Fatalf("kept %d characters, over %d", n, maxSearchChars)
		}
		// cluster (22+17+13 + 2 spaces = 54) + 10 × (197+1 space) = 2034; an 11th would be 2232.
		if len(kept) != 13 || len(dropped) != 2 {
			t.Fatalf("kept %d dropped %d, want 13 and 2", len(kept), len(dropped))
		}
	})
	t.Run("exactly 2048 fits", func(t *testing.T) {
		// 54 cluster characters + 1 space + 1993 = 2048.
		kept, dropped := mergeSearches(cluster, []string{strings.Repeat("x", 1993)})
		if len(kept) != 4 || len(dropped) != 0 {
			t.Fatalf("kept %d dropped %d", len(kept), len(dropped))
		}
		_, dropped = mergeSearches(cluster, []string{strings.Repeat("x", 1994)})
		if len(dropped) != 1 {
			t.Fatalf("2049 characters were not dropped")
		}
	})
	t.Run("warning names what is dropped", func(t *testing.T) {
		var own []string
		for i := range 30 {
			own = append(own, fmt.Sprintf("s%02d.ex", i))
		}
		cfg := testConfig()
		d := Decide(pod(dnsCfg(corev1.PodDNSConfig{Searches: own})), testEnv, &cfg)
		if len(d.DNSConfig.Searches) != 32 {
			t.Fatalf("%d searches", len(d.DNSConfig.Searches))
		}
		if !strings.Contains(strings.Join(d.Warnings, "\n"), "dropped: s29.ex") {
			t.Fatalf("warnings %q", d.Warnings)
		}
	})
}

func TestMuslSearchLineWarning(t *testing.T) {
	cfg := testConfig()
	// "search " (7) + cluster (54) + " " + own + "\n": the line is 63+len(own) bytes.
	for _, tc := range []struct {
		ownLen int
		warn   bool
	}{{192, false}, {193, true}, {300, true}} {
		own := strings.Repeat("q", tc.ownLen)
		d := Decide(pod(dnsCfg(corev1.PodDNSConfig{Searches: []string{own}})), testEnv, &cfg)
		line := renderSearchLine(d.DNSConfig.Searches)
		got := strings.Contains(strings.Join(d.Warnings, "\n"), "musl")
		if got != tc.warn {
			t.Errorf("search line of %d bytes: musl warning %v, want %v (%q)", len(line), got, tc.warn, d.Warnings)
		}
		if tc.warn && !strings.Contains(strings.Join(d.Warnings, "\n"), fmt.Sprintf("%d bytes", len(line))) {
			t.Errorf("warning does not give the line length %d: %q", len(line), d.Warnings)
		}
	}
}

func TestSidecarContainer(t *testing.T) {
	cfg := testConfig()
	cfg.Sidecar.Image = "example/resolver:1.2"
	cfg.Sidecar.ExtraArgs = []string{"--serve-stale"}
	p := pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "first"}}
	})
	d := Decide(p, Env{Namespace: "shop", Nameservers: []string{"10.96.0.10", "fd00::10"}}, &cfg)
	if d.Mode != ModeSidecar || d.Sidecar == nil {
		t.Fatalf("mode %s, sidecar %v", d.Mode, d.Sidecar)
	}
	c := d.Sidecar
	wantArgs := []string{"--listen=127.0.0.1:53", "--upstream=10.96.0.10:53", "--upstream=[fd00::10]:53", "--health-listen=127.0.0.1:8053", "--serve-stale"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	if c.Name != "dnsguard-resolver" || c.Image != "example/resolver:1.2" {
		t.Errorf("name %q image %q", c.Name, c.Image)
	}
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("not a native sidecar: restartPolicy %v", c.RestartPolicy)
	}
	wantProbe := []string{"/resolver", "probe", "--server=127.0.0.1:53"}
	for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe} {
		if pr == nil || pr.Exec == nil || !reflect.DeepEqual(pr.Exec.Command, wantProbe) || pr.HTTPGet != nil {
			t.Errorf("%s probe %+v, want exec %q", name, pr, wantProbe)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("securityContext not hardened: %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("no resource requests: %+v", c.Resources)
	}
	if d.Sysctl == nil || d.Sysctl.Name != "net.ipv4.ip_unprivileged_port_start" || d.Sysctl.Value != "53" {
		t.Errorf("sysctl %+v", d.Sysctl)
	}
	p = patchPod(t, p, d)
	if p.Spec.InitContainers[0].Name != SidecarName || p.Spec.InitContainers[1].Name != "first" {
		t.Errorf("sidecar not first: %v", []string{p.Spec.InitContainers[0].Name, p.Spec.InitContainers[1].Name})
	}
	if p.Annotations[AnnotationInjected] != ModeSidecar || p.Spec.DNSPolicy != corev1.DNSNone {
		t.Errorf("marker %q policy %q", p.Annotations[AnnotationInjected], p.Spec.DNSPolicy)
	}
	// Re-deciding on the result leaves it alone.
	if again := Decide(p, testEnv, &cfg); again.Mutates() {
		t.Errorf("second decision mutates: %+v", again)
	}
}

func TestDecideDoesNotModifyInput(t *testing.T) {
	cfg := testConfig()
	p := pod(annotate(AnnotationMode, ModeSidecar), dnsCfg(corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}}), sysctl("kernel.shm_rmid_forced", "1"))
	before := p.DeepCopy()
	d := Decide(p, testEnv, &cfg)
	if !reflect.DeepEqual(p, before) {
		t.Fatalf("Decide modified its input")
	}
	d.DNSConfig.Nameservers[0] = "changed"
	if p.Spec.DNSConfig.Nameservers[0] != "1.1.1.1" {
		t.Fatalf("decision aliases the pod's dnsConfig")
	}
}

func TestEffectiveResolvConf(t *testing.T) {
	cfg := testConfig()
	ns := []string{"10.96.0.10"}
	two := "2"
	cases := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"ClusterFirst", pod(), unknownNodeSearches + "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{"ClusterFirst with own dnsConfig", pod(dnsCfg(corev1.PodDNSConfig{Searches: []string{"a.example"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}}})),
			unknownNodeSearches + "search shop.svc.cluster.local svc.cluster.local cluster.local a.example\nnameserver 10.96.0.10\noptions ndots:2 edns0\n"},
		{"None", pod(policy(corev1.DNSNone), dnsCfg(corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}})), "nameserver 192.0.2.1\n"},
		{"Default", pod(policy(corev1.DNSDefault)), "# the node's /etc/resolv.conf (dnsPolicy Default)\n"},
		{"hostNetwork ClusterFirst", pod(hostNet), "# the node's /etc/resolv.conf (dnsPolicy ClusterFirst, hostNetwork)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := EffectiveResolvConf(tc.pod, "shop", ns, &cfg); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// Configured node search domains follow the cluster ones, before the
	// pod's own, and replace the note; an existing node cache is the
	// ClusterFirst pod's only nameserver (kubelet --cluster-dns).
	cfg.ExtraSearchDomains = []string{"ec2.internal", "corp.example.com"}
	cfg.NodeLocal = NodeLocalConfig{Existing: true}
	cfg.Normalize()
	if err := cfg.Validate(false); err != nil {
		t.Fatal(err)
	}
	want := "search shop.svc.cluster.local svc.cluster.local cluster.local ec2.internal corp.example.com a.example\nnameserver 169.254.20.10\noptions ndots:5\n"
	if got := EffectiveResolvConf(pod(dnsCfg(corev1.PodDNSConfig{Searches: []string{"a.example", "EC2.internal."}})), "shop", ns, &cfg); got != want {
		t.Errorf("with extraSearchDomains and nodeLocal.existing: got\n%s\nwant\n%s", got, want)
	}
}

// A container declaring 8053 would make the resolver's health listener fail
// to bind, and the resolver exit: the sidecar must listen elsewhere.
func TestSidecarHealthPortConflict(t *testing.T) {
	cfg := testConfig()
	cases := []struct {
		name  string
		ports [][]int32 // per container
		init  []int32
		want  string
	}{
		{"no ports", nil, nil, "--health-listen=127.0.0.1:8053"},
		{"8053 in app container", [][]int32{{8053}}, nil, "--health-listen=127.0.0.1:8054"},
		{"8053 and 8054 in two containers", [][]int32{{8053}, {8054}}, nil, "--health-listen=127.0.0.1:8055"},
		{"8053 in init container", nil, []int32{8053}, "--health-listen=127.0.0.1:8054"},
		{"8054 only", [][]int32{{8054}}, nil, "--health-listen=127.0.0.1:8053"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pod(annotate(AnnotationMode, ModeSidecar), func(p *corev1.Pod) {
				for i, ports := range tc.ports {
					if i >= len(p.Spec.Containers) {
						p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "x"})
					}
					for _, port := range ports {
						p.Spec.Containers[i].Ports = append(p.Spec.Containers[i].Ports, corev1.ContainerPort{ContainerPort: port})
					}
				}
				if tc.init != nil {
					ic := corev1.Container{Name: "init", Image: "x"}
					for _, port := range tc.init {
						ic.Ports = append(ic.Ports, corev1.ContainerPort{ContainerPort: port})
					}
					p.Spec.InitContainers = []corev1.Container{ic}
				}
			})
			d := Decide(p, testEnv, &cfg)
			if d.Sidecar == nil {
				t.Fatalf("no sidecar: %s %q", d.Reason, d.Warnings)
			}
			if !slices.Contains(d.Sidecar.Args, tc.want) {
				t.Errorf("args %q lack %q", d.Sidecar.Args, tc.want)
			}
		})
	}
}

// TestSidecarMetricsPort: with sidecar.metricsPort the resolver serves
// /metrics on the pod IP and declares the named port; a pod that already
// uses that port or name keeps its DNS cache but gets no metrics (the
// resolver would otherwise fail to bind and keep the pod from starting);
// off, the container is exactly as before.
func TestSidecarMetricsPort(t *testing.T) {
	port := func(name string, n int32, proto corev1.Protocol) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: n, Protocol: proto})
		}
	}
	sidecar := annotate(AnnotationMode, ModeSidecar)
	cases := []struct {
		name        string
		metricsPort int32
		extraArgs   []string
		pod         *corev1.Pod
		wantMetrics string // the --metrics-listen argument, "" for none
		wantHealth  string
		warn        string
	}{
		{name: "off", pod: pod(sidecar), wantHealth: "--health-listen=127.0.0.1:8053"},
		{name: "on", metricsPort: 9153, pod: pod(sidecar), wantMetrics: "--metrics-listen=:9153", wantHealth: "--health-listen=127.0.0.1:8053"},
		{name: "before extraArgs", metricsPort: 9153, extraArgs: []string{"--serve-stale"}, pod: pod(sidecar), wantMetrics: "--metrics-listen=:9153", wantHealth: "--health-listen=127.0.0.1:8053"},
		{name: "app declares the port", metricsPort: 9153, pod: pod(sidecar, port("", 9153, "")), wantHealth: "--health-listen=127.0.0.1:8053", warn: "container app declares port 9153, the resolver's metrics port"},
		{name: "app declares it as TCP", metricsPort: 9153, pod: pod(sidecar, port("prom", 9153, corev1.ProtocolTCP)), wantHealth: "--health-listen=127.0.0.1:8053", warn: "declares port 9153"},
		{name: "app declares it as UDP only", metricsPort: 9153, pod: pod(sidecar, port("", 9153, corev1.ProtocolUDP)), wantMetrics: "--metrics-listen=:9153", wantHealth: "--health-listen=127.0.0.1:8053"},
		{name: "app uses the port name", metricsPort: 9153, pod: pod(sidecar, port(SidecarMetricsPortName, 9000, "")), wantHealth: "--health-listen=127.0.0.1:8053", warn: "already declares a port named dg-metrics"},
		{name: "moved health port skips the metrics port", metricsPort: 8054, pod: pod(sidecar, port("", 8053, "")), wantMetrics: "--metrics-listen=:8054", wantHealth: "--health-listen=127.0.0.1:8055", warn: "moved it to 127.0.0.1:8055"},
		{name: "dnsconfig mode: nothing", metricsPort: 9153, pod: pod(annotate(AnnotationMode, ModeDNSConfig))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Sidecar.MetricsPort = tc.metricsPort
			cfg.Sidecar.ExtraArgs = tc.extraArgs
			if err := cfg.Validate(false); err != nil {
				t.Fatal(err)
			}
			d := Decide(tc.pod, testEnv, &cfg)
			if strings.Join(d.Warnings, "\n") != "" && tc.warn == "" || !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want one containing %q", d.Warnings, tc.warn)
			}
			if tc.wantHealth == "" {
				if d.Sidecar != nil {
					t.Fatalf("sidecar injected: %s", d.Reason)
				}
				return
			}
			if d.Sidecar == nil {
				t.Fatalf("no sidecar: %s %q", d.Reason, d.Warnings)
			}
			c := d.Sidecar
			var metricsArgs []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--metrics-listen") {
					metricsArgs = append(metricsArgs, a)
				}
			}
			if !slices.Contains(c.Args, tc.wantHealth) {
				t.Errorf("args %q lack %q", c.Args, tc.wantHealth)
			}
			if tc.wantMetrics == "" {
				if len(metricsArgs) != 0 || len(c.Ports) != 0 {
					t.Errorf("metrics without metricsPort: args %q ports %+v", metricsArgs, c.Ports)
				}
				return
			}
			if !slices.Equal(metricsArgs, []string{tc.wantMetrics}) {
				t.Errorf("metrics args %q, want [%q]", metricsArgs, tc.wantMetrics)
			}
			if want := []corev1.ContainerPort{{Name: "dg-metrics", ContainerPort: tc.metricsPort, Protocol: corev1.ProtocolTCP}}; !reflect.DeepEqual(c.Ports, want) {
				t.Errorf("ports %+v, want %+v", c.Ports, want)
			}
			if n := len(tc.extraArgs); n > 0 && !slices.Equal(c.Args[len(c.Args)-n:], tc.extraArgs) {
				t.Errorf("args %q do not end with sidecar.extraArgs %q (they must win)", c.Args, tc.extraArgs)
			}
		})
	}
}
