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
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/webhook"
	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			"deployment": "ghcr.io/dnsguard/webhook:" + v, "job/": "ghcr.io/dnsguard/webhook:" + v,
			"sidecar": "ghcr.io/dnsguard/resolver:" + v, "node-cache": "ghcr.io/dnsguard/resolver:" + v,
		}},
		{"tags", append([]string{"--set", "image.tag=w1", "--set", "sidecar.image.tag=s1", "--set", "nodeCache.image.tag=n1"}, nodeCache...), map[string]string{
			"deployment": "ghcr.io/dnsguard/webhook:w1", "job/": "ghcr.io/dnsguard/webhook:w1",
			"sidecar": "ghcr.io/dnsguard/resolver:s1", "node-cache": "ghcr.io/dnsguard/resolver:n1",
		}},
		{"ci/images-values: mirror and digests win over tags", []string{"-f", chartRel + "/ci/images-values.yaml"}, map[string]string{
			"deployment": "registry.example.com:5000/mirror/ghcr.io/dnsguard/webhook@" + d1,
			"job/":       "registry.example.com:5000/mirror/ghcr.io/dnsguard/webhook@" + d1,
			"sidecar":    "registry.example.com:5000/mirror/ghcr.io/dnsguard/resolver@" + d2,
			"node-cache": "registry.example.com:5000/mirror/ghcr.io/dnsguard/resolver@" + d3,
		}},
		{"registry with trailing slash, tags kept", append([]string{"--set", "global.imageRegistry=mirror.local/", "--set", "sidecar.image.tag=s2"}, nodeCache...), map[string]string{
			"deployment": "mirror.local/ghcr.io/dnsguard/webhook:" + v, "sidecar": "mirror.local/ghcr.io/dnsguard/resolver:s2",
			"node-cache": "mirror.local/ghcr.io/dnsguard/resolver:" + v,
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
	// The rendered nativeSidecars: auto asks the API server, which this
	// test has not; answer as a cluster of the chart's versions would.
	srv := webhook.NewServer(cfg, webhook.Options{Logger: slog.New(slog.DiscardHandler), NativeSidecars: webhook.StaticNativeSidecars("")})
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
				t.Fatalf("want the Deployments, the cleanup Job and the test pod, got %v", keys(specs))
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
	// The user's key is added to the default kubernetes.io/os: linux.
	if v, ok := s.NodeSelector["node-role.kubernetes.io/infra"]; !ok || v != "" || s.NodeSelector["kubernetes.io/os"] != "linux" || len(s.NodeSelector) != 2 {
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
