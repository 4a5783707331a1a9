//go:build chart

package chart

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/resolver"
	"github.com/dnsguard/dnsguard/webhook"
	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Checks of the chart features operators expect from cert-manager, Istio or
// Kyverno charts: image pinning and mirrors, sidecar pull secrets,
// OpenShift, monitoring, NetworkPolicy. Each renders the chart with the
// feature's values and asserts on the decoded objects.

// appVersion is the chart's appVersion, the default image tag.
func appVersion(t *testing.T) string {
	t.Helper()
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	raw := readChartFile(t, "Chart.yaml")
	if err := yaml.Unmarshal(raw, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q %v", c.AppVersion, err)
	}
	return c.AppVersion
}

// webhookConfig decodes the rendered webhook config.yaml into v.
func webhookConfig(t *testing.T, r *rendered, v any) {
	t.Helper()
	// Through a file, as the webhook reads it (strict keys, durations).
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(webhookConfigMap(t, r).Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.ReadFile(p, v); err != nil {
		t.Fatal(err)
	}
}

// images returns every image the rendered chart runs or injects, by where.
func images(t *testing.T, r *rendered) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range all[*appsv1.Deployment](r) {
		out["deployment"] = d.Spec.Template.Spec.Containers[0].Image
	}
	for _, j := range all[*batchv1.Job](r) {
		out["job/"+j.Name] = j.Spec.Template.Spec.Containers[0].Image
	}
	for _, d := range all[*appsv1.DaemonSet](r) {
		out["node-cache"] = d.Spec.Template.Spec.Containers[0].Image
	}
	var cfg webhook.Config
	webhookConfig(t, r, &cfg)
	out["sidecar"] = cfg.Sidecar.Image
	return out
}

func TestImageReferences(t *testing.T) {
	v := appVersion(t)
	const (
		d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	nodeCache := []string{"--set", "nodeCache.enabled=true", "--set", "nameservers={10.96.0.10}"}
	cases := []struct {
		name string
		args []string
		want map[string]string // where (prefix match on job/) -> image
	}{
		{"defaults: repository:appVersion", nodeCache, map[string]string{
			"deployment": "dnsguard/webhook:" + v, "job/": "dnsguard/webhook:" + v,
			"sidecar": "dnsguard/resolver:" + v, "node-cache": "dnsguard/resolver:" + v,
		}},
		{"tags", append([]string{"--set", "image.tag=w1", "--set", "sidecar.image.tag=s1", "--set", "nodeCache.image.tag=n1"}, nodeCache...), map[string]string{
			"deployment": "dnsguard/webhook:w1", "job/": "dnsguard/webhook:w1",
			"sidecar": "dnsguard/resolver:s1", "node-cache": "dnsguard/resolver:n1",
		}},
		{"ci/images-values: mirror and digests win over tags", []string{"-f", chartRel + "/ci/images-values.yaml"}, map[string]string{
			"deployment": "registry.example.com:5000/mirror/dnsguard/webhook@" + d1,
			"job/":       "registry.example.com:5000/mirror/dnsguard/webhook@" + d1,
			"sidecar":    "registry.example.com:5000/mirror/dnsguard/resolver@" + d2,
			"node-cache": "registry.example.com:5000/mirror/dnsguard/resolver@" + d3,
		}},
		{"registry with trailing slash, tags kept", append([]string{"--set", "global.imageRegistry=mirror.local/", "--set", "sidecar.image.tag=s2"}, nodeCache...), map[string]string{
			"deployment": "mirror.local/dnsguard/webhook:" + v, "sidecar": "mirror.local/dnsguard/resolver:s2",
			"node-cache": "mirror.local/dnsguard/resolver:" + v,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := images(t, render(t, tc.args...))
			for where, want := range tc.want {
				found := false
				for k, img := range got {
					if k == where || (strings.HasSuffix(where, "/") && strings.HasPrefix(k, where)) {
						found = true
						if img != want {
							t.Errorf("%s image %q, want %q", k, img, want)
						}
					}
				}
				if !found {
					t.Errorf("no %s rendered (have %v)", where, keys(got))
				}
			}
		})
	}
	for _, bad := range [][]string{
		{"--set", "image.digest=sha256:xyz"},
		{"--set", "sidecar.image.digest=latest"},
		{"--set", "global.imageRegistry=https://registry.example.com"},
	} {
		if _, _, err := helmTemplate(t, bad...); err == nil {
			t.Errorf("helm template %v succeeded, want a schema error", bad)
		}
	}
}

func readChartFile(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartRel, name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// loadedConfig is the rendered config.yaml as the webhook loads it.
func loadedConfig(t *testing.T, r *rendered) webhook.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(webhookConfigMap(t, r).Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := webhook.DefaultConfig()
	if err := config.ReadFile(f, &cfg); err != nil {
		t.Fatalf("webhook rejects the rendered config: %v", err)
	}
	cfg.Normalize() // as the binary does after loading
	if err := cfg.Validate(false); err != nil {
		t.Fatalf("rendered config is invalid: %v", err)
	}
	return cfg
}

// injectSidecar sends a sidecar-mode pod to the webhook's /mutate handler
// with the rendered configuration, applies the JSONPatch it answers with
// and returns the patched pod.
func injectSidecar(t *testing.T, cfg webhook.Config, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	cfg.Nameservers = []string{"10.96.0.10"}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
			Namespace: "shop", Object: runtime.RawExtension{Raw: raw}},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	srv := webhook.NewServer(cfg, webhook.Options{Logger: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Response == nil {
		t.Fatalf("/mutate: %d %s", rec.Code, rec.Body.String())
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatalf("no usable patch (warnings %q): %v", out.Response.Warnings, err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, out.Response.Patch)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.InitContainers) == 0 || got.Spec.InitContainers[0].Name != webhook.SidecarName {
		t.Fatalf("no sidecar injected (warnings %q)", out.Response.Warnings)
	}
	return &got
}

func sidecarPod() *corev1.Pod {
	p := plainPod("app", nil)
	p.Namespace = "shop"
	p.Annotations = map[string]string{webhook.AnnotationMode: webhook.ModeSidecar}
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mirror-pull"}}
	return p
}

func secretNames(refs []corev1.LocalObjectReference) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out
}

// TestSidecarPullSecrets follows sidecar.imagePullSecrets from the values
// through config.yaml into a pod patched by the webhook's own code.
func TestSidecarPullSecrets(t *testing.T) {
	r := render(t, "-f", chartRel+"/ci/sidecar-pull-secrets-values.yaml")
	cfg := loadedConfig(t, r)
	if !slices.Equal(cfg.Sidecar.ImagePullSecrets, []string{"resolver-pull", "mirror-pull"}) {
		t.Fatalf("config sidecar.imagePullSecrets %q, want [resolver-pull mirror-pull]", cfg.Sidecar.ImagePullSecrets)
	}
	pod := injectSidecar(t, cfg, sidecarPod())
	// The pod's own secret stays first and is not repeated.
	if got := secretNames(pod.Spec.ImagePullSecrets); !slices.Equal(got, []string{"mirror-pull", "resolver-pull"}) {
		t.Errorf("patched pod imagePullSecrets %q, want [mirror-pull resolver-pull]", got)
	}
	if img := pod.Spec.InitContainers[0].Image; !strings.HasPrefix(img, "registry.example.com/private/dnsguard-resolver:") {
		t.Errorf("sidecar image %q", img)
	}
	// Defaults: no key in config.yaml, and the pod's list is untouched.
	def := loadedConfig(t, render(t, "--set", "defaultMode=sidecar"))
	if len(def.Sidecar.ImagePullSecrets) != 0 {
		t.Errorf("default config has sidecar.imagePullSecrets %q", def.Sidecar.ImagePullSecrets)
	}
	if got := secretNames(injectSidecar(t, def, sidecarPod()).Spec.ImagePullSecrets); !slices.Equal(got, []string{"mirror-pull"}) {
		t.Errorf("default: imagePullSecrets %q, want the pod's own only", got)
	}
	for _, bad := range [][]string{
		{"--set", "sidecar.imagePullSecrets[0].name=Not_A_Name"},
		{"--set", "sidecar.imagePullSecrets[0]=regcred"},
	} {
		if _, _, err := helmTemplate(t, bad...); err == nil {
			t.Errorf("helm template %v succeeded, want a schema error", bad)
		}
	}
}

// podSpecs are the pod templates the chart itself runs (not the node cache,
// which is root on the host network by design).
func podSpecs(r *rendered) map[string]corev1.PodSpec {
	specs := map[string]corev1.PodSpec{}
	for _, d := range all[*appsv1.Deployment](r) {
		specs["deployment/"+d.Name] = d.Spec.Template.Spec
	}
	for _, j := range all[*batchv1.Job](r) {
		specs["job/"+j.Name] = j.Spec.Template.Spec
	}
	for _, p := range all[*corev1.Pod](r) {
		specs["pod/"+p.Name] = p.Spec
	}
	return specs
}

// TestOpenShiftLeavesIDsToThePlatform: with openshift=true no pod of the
// chart, and no injected sidecar, asks for a UID, GID or fsGroup (the
// restricted-v2 SCC rejects fixed ones outside the namespace range), while
// runAsNonRoot stays; without it, all of them are pinned to non-root IDs.
func TestOpenShiftLeavesIDsToThePlatform(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		platform bool
	}{
		{"defaults", []string{"--set", "defaultMode=sidecar"}, false},
		{"openshift", []string{"-f", chartRel + "/ci/openshift-values.yaml"}, true},
		{"sidecar.runAsUser null", []string{"-f", chartRel + "/ci/sidecar-pull-secrets-values.yaml"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			specs := podSpecs(r)
			if len(specs) < 3 {
				t.Fatalf("want the Deployment, the cert Jobs and the test pod, got %v", keys(specs))
			}
			for where, ps := range specs {
				psc := ps.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("%s: runAsNonRoot not set on the pod", where)
					continue
				}
				// The IDs each container runs with: its own, else the pod's.
				var ids []*int64
				for _, c := range containersOf(ps) {
					for _, pair := range [][2]*int64{{c.SecurityContext.RunAsUser, psc.RunAsUser}, {c.SecurityContext.RunAsGroup, psc.RunAsGroup}} {
						if pair[0] != nil {
							ids = append(ids, pair[0])
						} else {
							ids = append(ids, pair[1])
						}
					}
				}
				if tc.platform && psc.FSGroup != nil {
					t.Errorf("%s: fsGroup pinned to %d", where, *psc.FSGroup)
				}
				if !tc.platform && !strings.HasPrefix(where, "pod/") && (psc.FSGroup == nil || *psc.FSGroup == 0) {
					t.Errorf("%s: fsGroup %s, want a fixed non-root GID", where, deref(psc.FSGroup))
				}
				for _, id := range ids {
					if tc.platform && id != nil {
						t.Errorf("%s: a container runs with ID %d pinned; OpenShift's SCC must choose", where, *id)
					}
					if !tc.platform && (id == nil || *id == 0) {
						t.Errorf("%s: a container's UID/GID is %s, want a fixed non-root ID", where, deref(id))
					}
				}
			}
			cfg := loadedConfig(t, r)
			sc := injectSidecar(t, cfg, sidecarPod()).Spec.InitContainers[0].SecurityContext
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Error("sidecar: runAsNonRoot not true")
			}
			unset := tc.platform || tc.name == "sidecar.runAsUser null"
			if unset && (sc.RunAsUser != nil || sc.RunAsGroup != nil) {
				t.Errorf("sidecar runAsUser %s runAsGroup %s, want both unset", deref(sc.RunAsUser), deref(sc.RunAsGroup))
			}
			if !unset && (sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsGroup == nil || *sc.RunAsGroup != 65532) {
				t.Errorf("sidecar runAsUser %s runAsGroup %s, want 65532", deref(sc.RunAsUser), deref(sc.RunAsGroup))
			}
		})
	}
	if _, _, err := helmTemplate(t, "--set", "sidecar.runAsUser=-1"); err == nil {
		t.Error("sidecar.runAsUser=-1 accepted")
	}
}

// TestPlacementValues: priorityClassName, nodeSelector, tolerations,
// affinity and topologySpreadConstraints reach the webhook pods as given; a
// spread constraint without labelSelector gets the webhook's selector.
func TestPlacementValues(t *testing.T) {
	vals := `priorityClassName: system-cluster-critical
nodeSelector: {node-role.kubernetes.io/infra: ""}
tolerations: [{key: infra, operator: Exists, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}
  - {maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {team: dns}}}
`
	f := filepath.Join(t.TempDir(), "placement.yaml")
	if err := os.WriteFile(f, []byte(vals), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := webhookDeployment(t, render(t, "-f", f)).Spec.Template
	s := ps.Spec
	if s.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName %q", s.PriorityClassName)
	}
	if v, ok := s.NodeSelector["node-role.kubernetes.io/infra"]; !ok || v != "" || len(s.NodeSelector) != 1 {
		t.Errorf("nodeSelector %v", s.NodeSelector)
	}
	if len(s.Tolerations) != 1 || s.Tolerations[0].Key != "infra" || s.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", s.Tolerations)
	}
	if a := s.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil ||
		a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "amd64" {
		t.Errorf("affinity %+v", s.Affinity)
	}
	tsc := s.TopologySpreadConstraints
	if len(tsc) != 2 || tsc[0].WhenUnsatisfiable != corev1.DoNotSchedule || tsc[1].MaxSkew != 2 {
		t.Fatalf("topologySpreadConstraints %+v", tsc)
	}
	if !selector(t, tsc[0].LabelSelector).Matches(labels.Set(ps.Labels)) {
		t.Error("spread constraint without labelSelector does not select the webhook pods")
	}
	if tsc[1].LabelSelector.MatchLabels["team"] != "dns" || len(tsc[1].LabelSelector.MatchLabels) != 1 {
		t.Errorf("explicit labelSelector replaced: %+v", tsc[1].LabelSelector)
	}
	// Empty list: no constraints at all (the default has two).
	if n := len(webhookDeployment(t, render(t, "--set", "topologySpreadConstraints=null")).Spec.Template.Spec.TopologySpreadConstraints); n != 0 {
		t.Errorf("topologySpreadConstraints=null still renders %d", n)
	}
}

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
			svc := one[*corev1.Service](t, r)
			var sp *corev1.ServicePort
			for i := range svc.Spec.Ports {
				if svc.Spec.Ports[i].Name == "metrics" {
					sp = &svc.Spec.Ports[i]
				}
			}
			if sp == nil || sp.Port != tc.port || sp.TargetPort.String() != "metrics" {
				t.Fatalf("Service metrics port %+v, want %d -> metrics", sp, tc.port)
			}
			sms := crds(t, r, "ServiceMonitor")
			if !tc.sm {
				if len(sms) != 0 {
					t.Error("ServiceMonitor rendered although disabled")
				}
				return
			}
			if len(sms) != 1 {
				t.Fatalf("%d ServiceMonitors", len(sms))
			}
			var sm serviceMonitor
			strictJSON(t, sms[0], &sm)
			if sm.Metadata.Labels["release"] != "kube-prometheus-stack" {
				t.Errorf("ServiceMonitor labels %v lack metrics.serviceMonitor.labels", sm.Metadata.Labels)
			}
			if !selector(t, &sm.Spec.Selector).Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector %v does not select Service labels %v", sm.Spec.Selector, svc.Labels)
			}
			if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
				t.Errorf("namespaceSelector %v", sm.Spec.NamespaceSelector)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Scheme != "http" ||
				sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Interval != "15s" {
				t.Errorf("endpoints %+v, want port metrics, http, /metrics, 15s", sm.Spec.Endpoints)
			}
		})
	}
	if n := len(crds(t, render(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "webhookConfiguration.url=https://127.0.0.1:8443/mutate"), "ServiceMonitor")); n != 0 {
		t.Error("URL mode renders a ServiceMonitor for a webhook that is not in the cluster")
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

// collectingRegisterer records what NewMetrics registers.
type collectingRegisterer struct{ cs []prometheus.Collector }

func (c *collectingRegisterer) Register(x prometheus.Collector) error {
	c.cs = append(c.cs, x)
	return nil
}
func (c *collectingRegisterer) MustRegister(xs ...prometheus.Collector) { c.cs = append(c.cs, xs...) }
func (c *collectingRegisterer) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// knownMetrics are the metric names the webhook and the resolver export
// (histograms with their _bucket/_sum/_count series), read from the code
// itself, plus the certificate expiry gauge.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{
		// The notAfter gauges of the serving certificate and the CA
		// (label certificate="serving"|"ca"), exported by the certificate
		// rotation of issue 12.
		"dnsguard_certificate_expiry_timestamp_seconds": true,
	}
	reg := &collectingRegisterer{}
	webhook.NewMetrics(reg, func() float64 { return 1 })
	for _, c := range reg.cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				known[m[1]] = true
			}
		}
	}
	var buf bytes.Buffer
	if _, err := resolver.NewMetrics().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			known[f[2]] = true
		}
	}
	for name := range known {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[name+suffix] = true
		}
	}
	if !known["dnsguard_webhook_reviews_total"] || !known["dnsguard_resolver_responses_total"] {
		t.Fatalf("metric discovery failed: %v", keys(known))
	}
	return known
}

var metricRef = regexp.MustCompile(`\bdnsguard_[a-z_]+\b`)

// checkExpr fails when expr names a metric the code does not export or has
// unbalanced brackets (a template slip that Prometheus would reject).
func checkExpr(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 && !strings.Contains(expr, "up{") {
		t.Errorf("%s: expression names no dnsguard metric: %s", where, expr)
	}
	for _, m := range refs {
		if !known[m] {
			t.Errorf("%s: metric %s is not exported by the webhook or the resolver", where, m)
		}
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
	known := knownMetrics(t)
	r := render(t, "-f", chartRel+"/ci/monitoring-values.yaml", "--set-json", "metrics.prometheusRule.resolverServfailRatio=0.25")
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
			checkExpr(t, ru.Alert, ru.Expr, known)
		}
	}
	want := map[string]string{
		// alert -> a fragment its expression must hold, from the values
		"DNSGuardCertificateExpiringSoon":   "dnsguard_certificate_expiry_timestamp_seconds{namespace=\"" + namespace + "\"}) - time() < 2592000", // 30 days
		"DNSGuardCertificateExpiryCritical": "- time() < 604800",                                                                                  // default 7 days
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

func TestGrafanaDashboard(t *testing.T) {
	for _, cm := range all[*corev1.ConfigMap](render(t)) {
		if cm.Labels["grafana_dashboard"] != "" {
			t.Errorf("dashboard ConfigMap %s rendered by default", cm.Name)
		}
	}
	known := knownMetrics(t)
	r := render(t, "-f", chartRel+"/ci/monitoring-values.yaml")
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
			checkExpr(t, "panel "+p.Title, tg.Expr, known)
			for _, m := range metricRef.FindAllString(tg.Expr, -1) {
				seen[m] = true
			}
		}
	}
	for _, m := range []string{"dnsguard_webhook_reviews_total", "dnsguard_webhook_skips_total", "dnsguard_certificate_expiry_timestamp_seconds", "dnsguard_resolver_responses_total"} {
		if !seen[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// TestNetworkPolicy: the policy selects exactly the webhook pods, leaves
// the https port open to any source (the API server), the metrics port to
// metricsFrom only, and restricts egress only when asked.
func TestNetworkPolicy(t *testing.T) {
	if n := len(all[*networkingv1.NetworkPolicy](render(t))); n != 0 {
		t.Errorf("NetworkPolicy rendered by default")
	}
	r := render(t, "-f", chartRel+"/ci/networkpolicy-values.yaml")
	np := one[*networkingv1.NetworkPolicy](t, r)
	sel := selector(t, &np.Spec.PodSelector)
	dep := webhookDeployment(t, r)
	if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("NetworkPolicy does not select the webhook pods")
	}
	for _, j := range all[*batchv1.Job](r) {
		if sel.Matches(labels.Set(j.Spec.Template.Labels)) {
			t.Errorf("NetworkPolicy also selects the cert Job %s (it needs egress to the API server only, but is not meant to be covered)", j.Name)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var https, metrics *networkingv1.NetworkPolicyIngressRule
	for i, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			if p.Port == nil || containerPort(c, p.Port.String()) == 0 {
				t.Errorf("ingress port %v is not a named port of the webhook container", p.Port)
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
	if https == nil || len(https.From) != 0 {
		t.Errorf("https ingress %+v, want open to every source", https)
	}
	if metrics == nil || len(metrics.From) != 1 || metrics.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" ||
		metrics.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
		t.Errorf("metrics ingress %+v, want only networkPolicy.metricsFrom", metrics)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Egress) != 1 || np.Spec.Egress[0].To[0].IPBlock == nil || np.Spec.Egress[0].To[0].IPBlock.CIDR != "172.18.0.2/32" ||
		np.Spec.Egress[0].Ports[0].Port.IntValue() != 6443 {
		t.Errorf("egress %+v, want only the API server 172.18.0.2/32:6443", np.Spec.Egress)
	}
	// Without metricsFrom the metrics port is closed; egress stays open.
	open := one[*networkingv1.NetworkPolicy](t, render(t, "--set", "networkPolicy.enabled=true"))
	if len(open.Spec.Ingress) != 1 || !slices.Equal(open.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(open.Spec.Egress) != 0 {
		t.Errorf("minimal policy: ingress %+v policyTypes %v", open.Spec.Ingress, open.Spec.PolicyTypes)
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

// webhookConfigMap is the ConfigMap holding the webhook's config.yaml (the
// dashboard ConfigMap may be rendered beside it).
func webhookConfigMap(t *testing.T, r *rendered) *corev1.ConfigMap {
	t.Helper()
	var out []*corev1.ConfigMap
	for _, cm := range all[*corev1.ConfigMap](r) {
		if _, ok := cm.Data["config.yaml"]; ok {
			out = append(out, cm)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one ConfigMap with config.yaml, got %d", len(out))
	}
	return out[0]
}
