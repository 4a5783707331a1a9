//go:build chart

package chart

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/webhook"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Checks of the monitoring the chart renders: the metrics Services and
// ServiceMonitors, the PrometheusRule and when its groups render, the
// Grafana dashboard, and the NetworkPolicies that let Prometheus scrape.

// containerPort returns the port named name of c, or 0.
func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestMetricsPortAndServiceMonitor: the metrics listener flag, the pod's and
// the Service's "metrics" ports agree, and the ServiceMonitor selects that
// Service and port.
func TestMetricsPortAndServiceMonitor(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		port int32
		sm   bool
	}{
		{"defaults", nil, 8080, false},
		{"ci/monitoring-values", []string{"-f", chartRel + "/ci/monitoring-values.yaml"}, 9090, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			dep := webhookDeployment(t, r)
			c := dep.Spec.Template.Spec.Containers[0]
			if p := containerPort(c, "metrics"); p != tc.port {
				t.Errorf("containerPort metrics %d, want %d", p, tc.port)
			}
			// The listener address comes through the webhook's own
			// configuration file (metricsListen), loaded as the webhook does.
			var cfg webhook.Config
			webhookConfig(t, r, &cfg)
			if want := ":" + itoa(tc.port); cfg.MetricsListen != want {
				t.Errorf("webhook metricsListen %q, want %q", cfg.MetricsListen, want)
			}
			svcs := map[string]*corev1.Service{}
			for _, svc := range all[*corev1.Service](r) {
				svcs[svc.Name] = svc
				var sp *corev1.ServicePort
				for i := range svc.Spec.Ports {
					if svc.Spec.Ports[i].Name == "metrics" {
						sp = &svc.Spec.Ports[i]
					}
				}
				if sp == nil || sp.Port != tc.port || sp.TargetPort.String() != "metrics" {
					t.Fatalf("Service %s metrics port %+v, want %d -> metrics", svc.Name, sp, tc.port)
				}
			}
			// The Services select exactly their component's pods, whose
			// container declares the "metrics" port.
			for name, dep := range map[string]*appsv1.Deployment{release: dep, release + "-certs": certsDeployment(r)} {
				svc := svcs[name]
				if svc == nil {
					t.Fatalf("no Service %s (have %v)", name, keys(svcs))
				}
				sel := labels.SelectorFromSet(svc.Spec.Selector)
				for _, other := range all[*appsv1.Deployment](r) {
					if got := sel.Matches(labels.Set(other.Spec.Template.Labels)); got != (other.Name == dep.Name) {
						t.Errorf("Service %s selects Deployment %s pods: %v", name, other.Name, got)
					}
				}
				if containerPort(dep.Spec.Template.Spec.Containers[0], "metrics") == 0 {
					t.Errorf("Deployment %s declares no metrics port", dep.Name)
				}
			}
			sms := crds(t, r, "ServiceMonitor")
			if !tc.sm {
				if len(sms) != 0 {
					t.Error("ServiceMonitor rendered although disabled")
				}
				return
			}
			if len(sms) != 2 {
				t.Fatalf("%d ServiceMonitors, want the webhook's and the certificate controller's", len(sms))
			}
			for _, u := range sms {
				var sm serviceMonitor
				strictJSON(t, u, &sm)
				svc := svcs[sm.Metadata.Name]
				if svc == nil {
					t.Fatalf("ServiceMonitor %s has no Service of its name", sm.Metadata.Name)
				}
				if sm.Metadata.Labels["release"] != "kube-prometheus-stack" {
					t.Errorf("ServiceMonitor labels %v lack metrics.serviceMonitor.labels", sm.Metadata.Labels)
				}
				// Each monitor selects its own Service only (a monitor that
				// also selected the other would scrape it twice).
				for _, other := range svcs {
					if got := selector(t, &sm.Spec.Selector).Matches(labels.Set(other.Labels)); got != (other == svc) {
						t.Errorf("ServiceMonitor %s selects Service %s: %v", sm.Metadata.Name, other.Name, got)
					}
				}
				if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
					t.Errorf("namespaceSelector %v", sm.Spec.NamespaceSelector)
				}
				if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Scheme != "http" ||
					sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Interval != "15s" {
					t.Errorf("endpoints %+v, want port metrics, http, /metrics, 15s", sm.Spec.Endpoints)
				}
			}
		})
	}
	// URL mode: the certificate controller runs in the cluster, the
	// webhook does not.
	sms := crds(t, render(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "webhookConfiguration.url=https://127.0.0.1:8443/mutate"), "ServiceMonitor")
	if len(sms) != 1 || sms[0].GetName() != release+"-certs" {
		t.Errorf("URL mode renders ServiceMonitors %v, want only %s-certs", sms, release)
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// crds returns the rendered objects of a Prometheus Operator kind.
func crds(t *testing.T, r *rendered, kind string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, u := range all[*unstructured.Unstructured](r) {
		if u.GetKind() == kind {
			if u.GetAPIVersion() != "monitoring.coreos.com/v1" {
				t.Errorf("%s apiVersion %s", kind, u.GetAPIVersion())
			}
			if u.GetNamespace() != namespace {
				t.Errorf("%s namespace %q", kind, u.GetNamespace())
			}
			out = append(out, u)
		}
	}
	return out
}

// strictJSON decodes u into v, failing on fields v does not declare: the
// types below carry the monitoring.coreos.com/v1 field names the chart uses,
// so a misspelt field fails here instead of being pruned by the API server.
func strictJSON(t *testing.T, u *unstructured.Unstructured, v any) {
	t.Helper()
	js, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not decode strictly: %v\n%s", u.GetKind(), err, js)
	}
}

type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type serviceMonitor struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		JobLabel          string `json:"jobLabel"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			HonorLabels   bool   `json:"honorLabels"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type prometheusRule struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

var metricRef = regexp.MustCompile(`\bdnsguard_[a-z_]+\b`)

// checkExpr fails when expr names no dnsguard metric or has unbalanced
// brackets (a template slip that Prometheus would reject). Whether the
// binaries export the metrics it names is TestQueriedMetricsExported's job;
// whether Prometheus parses it, promtool's (TestPromtoolRules).
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 && !strings.Contains(expr, "up{") {
		t.Errorf("%s: expression names no dnsguard metric: %s", where, expr)
	}
	for _, pair := range []string{"()", "{}", "[]"} {
		if strings.Count(expr, pair[:1]) != strings.Count(expr, pair[1:]) {
			t.Errorf("%s: unbalanced %s in %s", where, pair, expr)
		}
	}
	if strings.Contains(expr, "<no value>") || strings.Contains(expr, "%!") {
		t.Errorf("%s: template slip in %s", where, expr)
	}
}

func TestPrometheusRule(t *testing.T) {
	if n := len(crds(t, render(t), "PrometheusRule")); n != 0 {
		t.Errorf("PrometheusRule rendered by default")
	}
	r := render(t, append(monitoringArgs, "--set-json", "metrics.prometheusRule.resolverServfailRatio=0.25")...)
	prs := crds(t, r, "PrometheusRule")
	if len(prs) != 1 {
		t.Fatalf("%d PrometheusRules", len(prs))
	}
	var pr prometheusRule
	strictJSON(t, prs[0], &pr)
	if pr.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("labels %v lack metrics.prometheusRule.labels", pr.Metadata.Labels)
	}
	alerts := map[string]rule{}
	for _, g := range pr.Spec.Groups {
		for _, ru := range g.Rules {
			if ru.Alert == "" {
				t.Errorf("group %s: rule without alert name", g.Name)
				continue
			}
			alerts[ru.Alert] = ru
			if d, err := time.ParseDuration(ru.For); err != nil || d < time.Minute {
				t.Errorf("%s: for %q, want a duration of at least 1m", ru.Alert, ru.For)
			}
			if s := ru.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", ru.Alert, s)
			}
			if ru.Annotations["summary"] == "" || len(ru.Annotations["description"]) < 40 {
				t.Errorf("%s: annotations %v lack summary/description", ru.Alert, ru.Annotations)
			}
			checkExpr(t, ru.Alert, ru.Expr)
		}
	}
	want := map[string]string{
		// alert -> a fragment its expression must hold, from the values
		"DNSGuardCertificateExpiringSoon":   `dnsguard_webhook_serving_cert_expiry_timestamp_seconds{namespace="` + namespace + `"}), "certificate", "serving"`,
		"DNSGuardCertificateExpiryCritical": `dnsguard_certs_ca_cert_expiry_timestamp_seconds{namespace="` + namespace + `"} > 0), "certificate", "ca"`,
		"DNSGuardCertificateControllerDown": `up{namespace="` + namespace + `", service="` + release + `-certs", endpoint="metrics"}`,
		"DNSGuardCertificateReconcileStale": "> 3600", // default 60 minutes
		"DNSGuardWebhookDown":               `up{namespace="` + namespace + `", service="` + release + `", endpoint="metrics"}`,
		"DNSGuardWebhookErrors":             ") > 0.1",
		"DNSGuardPodsSkipped":               `reason=~"no-nameservers|internal-error|undecodable|no-namespace"`,
		"DNSGuardNameserversUnknown":        "dnsguard_webhook_nameservers_known",
		"DNSGuardResolverServfail":          `rcode="SERVFAIL"`,
		"DNSGuardResolverUpstreamFailures":  "dnsguard_resolver_upstream_errors_total",
	}
	for name, frag := range want {
		ru, ok := alerts[name]
		if !ok {
			t.Errorf("alert %s missing (have %v)", name, keys(alerts))
			continue
		}
		if !strings.Contains(ru.Expr, frag) {
			t.Errorf("%s: expr does not contain %q:\n%s", name, frag, ru.Expr)
		}
	}
	for name, frag := range map[string]string{
		"DNSGuardCertificateExpiringSoon":   ") - time() < 2592000", // 30 days in ci/monitoring-values
		"DNSGuardCertificateExpiryCritical": ") - time() < 604800",  // default 7 days
	} {
		if !strings.Contains(alerts[name].Expr, frag) {
			t.Errorf("%s: expr does not contain %q:\n%s", name, frag, alerts[name].Expr)
		}
	}
	if ru := alerts["DNSGuardResolverServfail"]; !strings.Contains(ru.Expr, "> 0.25") {
		t.Errorf("resolverServfailRatio=0.25 not in %s", ru.Expr)
	}
	// The certificate alerts say which certificate, through the label the
	// gauge carries.
	if s := alerts["DNSGuardCertificateExpiringSoon"].Annotations["summary"]; !strings.Contains(s, "{{ $labels.certificate }}") {
		t.Errorf("certificate alert summary %q does not name the certificate", s)
	}
	if _, _, err := helmTemplate(t, "--set", "metrics.prometheusRule.webhookErrorRatio=5"); err == nil {
		t.Error("webhookErrorRatio=5 accepted; ratios are 0-1")
	}
}

// TestPrometheusRuleNeedsItsScrape: each alert group renders only with the
// monitor that scrapes its metrics (DNSGuardWebhookDown, absent(up == 1),
// would fire forever without the webhook's ServiceMonitor), and rules with
// no monitor at all fail the render, naming the values to set.
// Negative control: rendering the dnsguard-webhook group unconditionally
// (dropping its `if $webhook`) fails the "resolvers only" and "URL mode"
// rows.
func TestPrometheusRuleNeedsItsScrape(t *testing.T) {
	on := []string{"--set", "metrics.prometheusRule.enabled=true"}
	for _, tc := range []struct {
		name   string
		args   []string
		groups []string
		expiry []string // certificates in the expiry alerts
	}{
		{"service monitors", []string{"--set", "metrics.serviceMonitor.enabled=true"},
			[]string{"dnsguard-certificates", "dnsguard-webhook"}, []string{"serving", "ca"}},
		{"cert-manager: no controller", []string{"--set", "metrics.serviceMonitor.enabled=true", "-f", chartRel + "/ci/certmanager-values.yaml"},
			[]string{"dnsguard-certificates", "dnsguard-webhook"}, []string{"serving"}},
		{"URL mode: the controller only", []string{"--set", "metrics.serviceMonitor.enabled=true", "-f", chartRel + "/ci/url-values.yaml"},
			[]string{"dnsguard-certificates"}, []string{"ca"}},
		{"resolvers only", []string{"-f", chartRel + "/ci/resolver-metrics-values.yaml"},
			[]string{"dnsguard-resolver"}, nil},
		{"everything", monitoringArgs,
			[]string{"dnsguard-certificates", "dnsguard-webhook", "dnsguard-resolver"}, []string{"serving", "ca"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, append(append([]string{}, on...), tc.args...)...)
			var pr prometheusRule
			strictJSON(t, one1(t, crds(t, r, "PrometheusRule")), &pr)
			var groups []string
			for _, g := range pr.Spec.Groups {
				groups = append(groups, g.Name)
				for _, ru := range g.Rules {
					if ru.Alert != "DNSGuardCertificateExpiringSoon" {
						continue
					}
					for _, c := range []string{"serving", "ca"} {
						if has := strings.Contains(ru.Expr, `"certificate", "`+c+`"`); has != slices.Contains(tc.expiry, c) {
							t.Errorf("expiry alert watches %s: %v, want %v:\n%s", c, has, !has, ru.Expr)
						}
					}
				}
			}
			if !slices.Equal(groups, tc.groups) {
				t.Errorf("groups %v, want %v", groups, tc.groups)
			}
		})
	}
	_, stderr, err := helmTemplate(t, on...)
	if err == nil || !strings.Contains(stderr, "enable metrics.serviceMonitor") {
		t.Errorf("rules without any monitor: err=%v stderr=%s, want a failure naming metrics.serviceMonitor", err, stderr)
	}
}

// one1 is the only element of xs.
func one1[T any](t *testing.T, xs []T) T {
	t.Helper()
	if len(xs) != 1 {
		t.Fatalf("%d objects, want 1", len(xs))
	}
	return xs[0]
}

func TestGrafanaDashboard(t *testing.T) {
	for _, cm := range all[*corev1.ConfigMap](render(t)) {
		if cm.Labels["grafana_dashboard"] != "" {
			t.Errorf("dashboard ConfigMap %s rendered by default", cm.Name)
		}
	}
	r := render(t, monitoringArgs...)
	var dash *corev1.ConfigMap
	for _, cm := range all[*corev1.ConfigMap](r) {
		if cm.Labels["grafana_dashboard"] == "1" {
			dash = cm
		}
	}
	if dash == nil {
		t.Fatal("no ConfigMap labelled grafana_dashboard=1")
	}
	if dash.Namespace != "monitoring" || dash.Annotations["grafana_folder"] != "DNS" {
		t.Errorf("dashboard namespace %q annotations %v, want the values'", dash.Namespace, dash.Annotations)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(dash.Data["dnsguard.json"]), &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) < 6 {
		t.Fatalf("dashboard uid %q title %q with %d panels", d.UID, d.Title, len(d.Panels))
	}
	seen := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr)
			for _, m := range metricRef.FindAllString(tg.Expr, -1) {
				seen[m] = true
			}
		}
	}
	for _, m := range []string{"dnsguard_webhook_reviews_total", "dnsguard_webhook_skips_total", "dnsguard_webhook_serving_cert_expiry_timestamp_seconds",
		"dnsguard_certs_ca_cert_expiry_timestamp_seconds", "dnsguard_resolver_responses_total"} {
		if !seen[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// TestNetworkPolicy: one policy selects exactly the webhook pods, leaves the
// https port open to any source (the API server) and the metrics port to
// metricsFrom only; another selects exactly the certificate controller pods
// and opens only its metrics port to metricsFrom; both restrict egress to
// the API server only when asked.
// Negative control: dropping the certs entry of $policies in
// networkpolicy.yaml fails "0 NetworkPolicies select the dnsguard-certs pods".
func TestNetworkPolicy(t *testing.T) {
	if n := len(all[*networkingv1.NetworkPolicy](render(t))); n != 0 {
		t.Errorf("NetworkPolicy rendered by default")
	}
	r := render(t, "-f", chartRel+"/ci/networkpolicy-values.yaml")
	nps := all[*networkingv1.NetworkPolicy](r)
	for _, dep := range all[*appsv1.Deployment](r) {
		var mine []*networkingv1.NetworkPolicy
		for _, np := range nps {
			if selector(t, &np.Spec.PodSelector).Matches(labels.Set(dep.Spec.Template.Labels)) {
				mine = append(mine, np)
			}
		}
		if len(mine) != 1 {
			t.Errorf("%d NetworkPolicies select the %s pods, want 1", len(mine), dep.Name)
			continue
		}
		np := mine[0]
		c := dep.Spec.Template.Spec.Containers[0]
		webhook := dep.Labels["dnsguard.io/component"] == "webhook"
		var https, metrics *networkingv1.NetworkPolicyIngressRule
		for i, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port == nil || containerPort(c, p.Port.String()) == 0 {
					t.Errorf("%s: ingress port %v is not a named port of the %s container", np.Name, p.Port, c.Name)
					continue
				}
				switch p.Port.String() {
				case "https":
					https = &np.Spec.Ingress[i]
				case "metrics":
					metrics = &np.Spec.Ingress[i]
				}
			}
		}
		if webhook && (https == nil || len(https.From) != 0) {
			t.Errorf("%s: https ingress %+v, want open to every source", np.Name, https)
		}
		if !webhook && https != nil {
			t.Errorf("%s: the certificate controller takes no admission requests, but https is open", np.Name)
		}
		if metrics == nil || len(metrics.From) != 1 || metrics.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" ||
			metrics.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
			t.Errorf("%s: metrics ingress %+v, want only networkPolicy.metricsFrom", np.Name, metrics)
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
			t.Errorf("%s: policyTypes %v", np.Name, np.Spec.PolicyTypes)
		}
		if len(np.Spec.Egress) != 1 || np.Spec.Egress[0].To[0].IPBlock == nil || np.Spec.Egress[0].To[0].IPBlock.CIDR != "172.18.0.2/32" ||
			np.Spec.Egress[0].Ports[0].Port.IntValue() != 6443 {
			t.Errorf("%s: egress %+v, want only the API server 172.18.0.2/32:6443", np.Name, np.Spec.Egress)
		}
	}
	if len(nps) != 2 {
		t.Errorf("%d NetworkPolicies, want the webhook's and the certificate controller's", len(nps))
	}
	for _, pod := range all[*corev1.Pod](r) {
		for _, np := range nps {
			if selector(t, &np.Spec.PodSelector).Matches(labels.Set(pod.Labels)) {
				t.Errorf("NetworkPolicy %s also selects the test pod %s", np.Name, pod.Name)
			}
		}
	}
	// Without metricsFrom the metrics ports are closed; egress stays open.
	for _, np := range all[*networkingv1.NetworkPolicy](render(t, "--set", "networkPolicy.enabled=true")) {
		wantIngress := 0
		if np.Name == release {
			wantIngress = 1 // https
		}
		if len(np.Spec.Ingress) != wantIngress || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
			t.Errorf("minimal policy %s: ingress %+v policyTypes %v", np.Name, np.Spec.Ingress, np.Spec.PolicyTypes)
		}
	}
	// Settings that would silently cut the webhook off fail the install.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true"}, "networkPolicy.egress.apiServer"},
		{[]string{"--set", "networkPolicy.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"}, "networkPolicy.metricsFrom"},
	} {
		if _, stderr, err := helmTemplate(t, tc.args...); err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: err=%v stderr=%s, want a failure naming %s", tc.args, err, stderr, tc.want)
		}
	}
}
