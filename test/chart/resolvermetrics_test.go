//go:build chart

package chart

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/webhook"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The resolvers' own metrics: nodeCache.metrics, sidecar.metricsPort and
// metrics.podMonitor, followed from the values into the DaemonSet args, the
// webhook's config, a pod patched by the webhook's own code and the
// PodMonitors, each decoded strictly.

const resolverMetricsValues = chartRel + "/ci/resolver-metrics-values.yaml"

type relabeling struct {
	Action       string   `json:"action"`
	SourceLabels []string `json:"sourceLabels"`
	Regex        string   `json:"regex"`
	TargetLabel  string   `json:"targetLabel"`
	Replacement  string   `json:"replacement"`
}

type podMonitor struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		NamespaceSelector struct {
			Any        bool     `json:"any"`
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string       `json:"port"`
			Path          string       `json:"path"`
			Scheme        string       `json:"scheme"`
			Interval      string       `json:"interval"`
			ScrapeTimeout string       `json:"scrapeTimeout"`
			HonorLabels   bool         `json:"honorLabels"`
			Relabelings   []relabeling `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// podMonitors returns the rendered PodMonitors by their component label.
func podMonitors(t *testing.T, r *rendered) map[string]podMonitor {
	t.Helper()
	out := map[string]podMonitor{}
	for _, u := range crds(t, r, "PodMonitor") {
		var pm podMonitor
		strictJSON(t, u, &pm)
		out[pm.Metadata.Labels["dnsguard.io/component"]] = pm
	}
	return out
}

// relabel applies rules to a target's labels the way Prometheus does for
// the two actions the chart uses: source labels joined by ";", the regex
// anchored, keep drops the target on no match, replace sets the target
// label to the expanded replacement on a match. It returns nil for a
// dropped target.
func relabel(t *testing.T, rules []relabeling, lbls map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range lbls {
		out[k] = v
	}
	for _, r := range rules {
		var vals []string
		for _, s := range r.SourceLabels {
			vals = append(vals, out[s])
		}
		re, err := regexp.Compile("^(?:" + r.Regex + ")$")
		if err != nil {
			t.Fatalf("relabel regex %q: %v", r.Regex, err)
		}
		m := re.FindStringSubmatchIndex(strings.Join(vals, ";"))
		switch r.Action {
		case "keep":
			if m == nil {
				return nil
			}
		case "replace":
			if m != nil {
				out[r.TargetLabel] = string(re.ExpandString(nil, r.Replacement, strings.Join(vals, ";"), m))
			}
		default:
			t.Fatalf("relabel action %q not simulated", r.Action)
		}
	}
	return out
}

func TestResolverMetricsOffByDefault(t *testing.T) {
	for name, args := range map[string][]string{
		"defaults": nil,
		// A PodMonitor is only rendered for a resolver that serves metrics.
		"podMonitor without metrics":            {"--set", "metrics.podMonitor.enabled=true", "--set", "nodeCache.enabled=true", "--set", "nameservers={10.96.0.10}"},
		"node cache metrics without podMonitor": {"--set", "nodeCache.metrics.enabled=true", "--set", "sidecar.metricsPort=9153", "--set", "nodeCache.enabled=true", "--set", "nameservers={10.96.0.10}"},
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, args...)
			if pms := crds(t, r, "PodMonitor"); len(pms) != 0 {
				t.Errorf("%d PodMonitors rendered", len(pms))
			}
		})
	}
	// Off, the webhook config does not even mention the key, so every
	// admission patch is exactly what it was before the option existed.
	r := render(t, "-f", chartRel+"/ci/nodecache-values.yaml")
	if raw := webhookConfigMap(t, r).Data["config.yaml"]; strings.Contains(raw, "metricsPort") {
		t.Errorf("config.yaml mentions metricsPort with sidecar.metricsPort 0:\n%s", raw)
	}
	if cfg := loadedConfig(t, r); cfg.Sidecar.MetricsPort != 0 {
		t.Errorf("sidecar.metricsPort %d by default", cfg.Sidecar.MetricsPort)
	}
	args := one[*appsv1.DaemonSet](t, r).Spec.Template.Spec.Containers[0].Args
	for _, a := range args {
		if strings.HasPrefix(a, "--metrics-listen") {
			t.Errorf("node cache args %v serve metrics with nodeCache.metrics.enabled false", args)
		}
	}
	p := injectSidecar(t, loadedConfig(t, r), sidecarPod())
	if c := p.Spec.InitContainers[0]; len(c.Ports) != 0 || slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-listen") }) {
		t.Errorf("sidecar with metrics although sidecar.metricsPort is 0: ports %v args %v", c.Ports, c.Args)
	}
}

func TestNodeCacheMetrics(t *testing.T) {
	r := render(t, "-f", resolverMetricsValues)
	ds := one[*appsv1.DaemonSet](t, r)
	c := ds.Spec.Template.Spec.Containers[0]
	// The args as the resolver parses them.
	cfg, err := parseResolverArgs(c.Args)
	if err != nil && !strings.Contains(err.Error(), "resolv-conf") {
		t.Fatalf("resolver rejects the DaemonSet args %v: %v", c.Args, err)
	}
	if cfg.MetricsListen != "0.0.0.0:9300" {
		t.Errorf("node cache --metrics-listen %q, want 0.0.0.0:9300 (nodeCache.metrics.port)", cfg.MetricsListen)
	}
	if cfg.HealthListen != "127.0.0.1:9254" {
		t.Errorf("health listener moved to %q: the probes need it on loopback", cfg.HealthListen)
	}
	// No declared port: on a hostNetwork pod it would be defaulted into a
	// hostPort, and the surge pod could not schedule beside the old one.
	if len(c.Ports) != 0 {
		t.Errorf("node cache declares ports %+v; a hostNetwork pod's port becomes a hostPort and blocks the surge update", c.Ports)
	}
	pm, ok := podMonitors(t, r)["node-cache"]
	if !ok {
		t.Fatal("no node-cache PodMonitor")
	}
	if pm.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("labels %v lack metrics.podMonitor.labels", pm.Metadata.Labels)
	}
	if !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{namespace}) || pm.Spec.NamespaceSelector.Any {
		t.Errorf("namespaceSelector %+v, want the release namespace", pm.Spec.NamespaceSelector)
	}
	if !selector(t, &pm.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the DaemonSet's pods %v", pm.Spec.Selector, ds.Spec.Template.Labels)
	}
	for _, d := range webhookDeployments(r) {
		if selector(t, &pm.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("node-cache PodMonitor also selects the webhook pods %v", d.Spec.Template.Labels)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d endpoints", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != "" || ep.Path != "/metrics" || ep.Scheme != "http" || ep.Interval != "15s" || ep.ScrapeTimeout != "10s" {
		t.Errorf("endpoint %+v, want no port name, /metrics, http, 15s, 10s", ep)
	}
	// What Prometheus' pod discovery gives a container without ports, after
	// the PodMonitor's relabelings: the node's address at the metrics port.
	for _, tc := range []struct {
		container, ip, want string
	}{
		{"node-cache", "10.0.0.7", "10.0.0.7:9300"},
		{"node-cache", "fd00:10::7", "[fd00:10::7]:9300"},
		{"other", "10.0.0.7", ""},
	} {
		got := relabel(t, ep.Relabelings, map[string]string{
			"__address__":                          tc.ip,
			"__meta_kubernetes_pod_ip":             tc.ip,
			"__meta_kubernetes_pod_container_name": tc.container,
		})
		if tc.want == "" {
			if got != nil {
				t.Errorf("container %s kept as %s", tc.container, got["__address__"])
			}
			continue
		}
		if got == nil || got["__address__"] != tc.want {
			t.Errorf("pod IP %s: scraped at %v, want %s", tc.ip, got, tc.want)
		}
	}
	if _, ok := podMonitors(t, r)["sidecar"]; !ok {
		t.Error("no sidecar PodMonitor although sidecar.metricsPort is set")
	}
}

func TestNodeCacheMetricsPortChecks(t *testing.T) {
	base := []string{"--set", "nodeCache.enabled=true", "--set", "nameservers={10.96.0.10}", "--set", "nodeCache.metrics.enabled=true"}
	_, stderr, err := helmTemplate(t, append(base, "--set", "nodeCache.metrics.port=9254")...)
	if err == nil || !strings.Contains(stderr, "nodeCache.metrics.port must differ from nodeCache.healthPort") {
		t.Errorf("metrics port = health port: %v\n%s", err, stderr)
	}
	for _, bad := range []string{"nodeCache.metrics.port=53", "nodeCache.metrics.port=0", "nodeCache.metrics.port=70000", "nodeCache.metrics.bogus=1"} {
		if _, stderr, err := helmTemplate(t, append(base, "--set", bad)...); err == nil || !strings.Contains(stderr, "schema") && !strings.Contains(stderr, "values don't meet") {
			t.Errorf("--set %s: %v, want a schema error\n%s", bad, err, stderr)
		}
	}
	// The default port renders.
	r := render(t, base...)
	args := one[*appsv1.DaemonSet](t, r).Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--metrics-listen=0.0.0.0:9253") {
		t.Errorf("args %v lack --metrics-listen=0.0.0.0:9253", args)
	}
}

func TestSidecarMetrics(t *testing.T) {
	r := render(t, "-f", resolverMetricsValues)
	cfg := loadedConfig(t, r)
	if cfg.Sidecar.MetricsPort != 9300 {
		t.Fatalf("webhook sidecar.metricsPort %d, want 9300", cfg.Sidecar.MetricsPort)
	}
	// The webhook's own decision with the rendered config.
	p := injectSidecar(t, cfg, sidecarPod())
	c := p.Spec.InitContainers[0]
	if c.Name != webhook.SidecarName {
		t.Fatalf("first init container %s", c.Name)
	}
	rc, err := parseResolverArgs(c.Args)
	if err != nil {
		t.Fatalf("resolver rejects the injected args %v: %v", c.Args, err)
	}
	if rc.MetricsListen != ":9300" {
		t.Errorf("injected --metrics-listen %q, want :9300", rc.MetricsListen)
	}
	pm, ok := podMonitors(t, r)["sidecar"]
	if !ok {
		t.Fatal("no sidecar PodMonitor")
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d endpoints", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if containerPort(c, ep.Port) != 9300 {
		t.Errorf("PodMonitor port %q is not the injected container's 9300 (ports %+v)", ep.Port, c.Ports)
	}
	if ep.Path != "/metrics" || ep.Scheme != "http" || ep.Interval != "15s" || len(ep.Relabelings) != 0 {
		t.Errorf("endpoint %+v", ep)
	}
	// Every pod of the listed namespaces; the port name does the rest.
	if !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{"shop", "team-a"}) || pm.Spec.NamespaceSelector.Any {
		t.Errorf("namespaceSelector %+v, want metrics.podMonitor.sidecarNamespaces", pm.Spec.NamespaceSelector)
	}
	if sel := selector(t, &pm.Spec.Selector); !sel.Matches(labels.Set(p.Labels)) || !sel.Empty() {
		t.Errorf("selector %v: want every pod (app pods carry no dnsguard label)", pm.Spec.Selector)
	}
	// Without sidecarNamespaces: every namespace.
	r = render(t, "-f", resolverMetricsValues, "--set", "metrics.podMonitor.sidecarNamespaces=null")
	if ns := podMonitors(t, r)["sidecar"].Spec.NamespaceSelector; !ns.Any || len(ns.MatchNames) != 0 {
		t.Errorf("namespaceSelector %+v, want any: true", ns)
	}
	// Only the sidecar: one PodMonitor.
	r = render(t, "--set", "sidecar.metricsPort=9153", "--set", "metrics.podMonitor.enabled=true")
	if pms := podMonitors(t, r); len(pms) != 1 || pms["sidecar"].Spec.PodMetricsEndpoints[0].Port != webhook.SidecarMetricsPortName {
		t.Errorf("PodMonitors %+v, want the sidecar one only", pms)
	}
}

func TestSidecarMetricsPortSchema(t *testing.T) {
	for _, bad := range []string{"sidecar.metricsPort=53", "sidecar.metricsPort=8053", "sidecar.metricsPort=70000", "sidecar.metricsPort=-1",
		"metrics.podMonitor.bogus=1", "metrics.podMonitor.interval=often", "metrics.podMonitor.sidecarNamespaces={Not_A_Namespace}"} {
		if _, stderr, err := helmTemplate(t, "--set", bad); err == nil || !strings.Contains(stderr, "schema") && !strings.Contains(stderr, "values don't meet") {
			t.Errorf("--set %s: %v, want a schema error\n%s", bad, err, stderr)
		}
	}
}
