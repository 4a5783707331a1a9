//go:build chart

// Package chart checks the manifests rendered from charts/dnsguard: every
// document is decoded strictly into the k8s.io/api types and the rules that
// keep a mutating webhook from hurting a cluster are asserted on the typed
// objects (selectors evaluated as the API server evaluates them, CEL match
// conditions compiled and run). Run by hack/chart-test.sh, which builds
// nothing: HELM points at the helm binary (default ../../bin/helm).
package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/webhook"
	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	release   = "dnsguard"
	namespace = "dnsguard-system"
	chartRel  = "../../charts/dnsguard"
)

// strict rejects unknown and duplicate fields, so a typo in a template
// (e.g. "readOnlyRootFileSystem") fails here instead of being silently
// dropped by the API server.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		h = "../../bin/helm"
	}
	abs, err := filepath.Abs(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("helm binary %s: %v (run `make bin/helm` or set HELM)", abs, err)
	}
	return abs
}

// rendered is one `helm template` output, decoded.
type rendered struct {
	objs []runtime.Object
	raw  string
}

// helmTemplate runs helm template with extra args and returns stdout,
// stderr and the error.
func helmTemplate(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"template", release, chartRel, "--namespace", namespace}, args...)
	cmd := exec.Command(helmBin(t), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func render(t *testing.T, args ...string) *rendered {
	t.Helper()
	out, stderr, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr)
	}
	return decode(t, out)
}

// decode decodes the documents of a helm template output.
func decode(t *testing.T, out string) *rendered {
	t.Helper()
	r := &rendered{raw: out}
	for i, doc := range splitDocs(out) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc)) // duplicate keys are errors
		if err != nil {
			t.Fatalf("document %d is not YAML: %v\n%s", i, err, doc)
		}
		if string(js) == "null" {
			continue
		}
		var meta metav1.TypeMeta
		if err := json.Unmarshal(js, &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		// CRD kinds (cert-manager, Prometheus Operator) are not in the
		// client-go scheme; their tests decode them from unstructured.
		if strings.HasPrefix(meta.APIVersion, "cert-manager.io/") || strings.HasPrefix(meta.APIVersion, "monitoring.coreos.com/") {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatalf("document %d (%s): %v", i, meta.Kind, err)
			}
			r.objs = append(r.objs, u)
			continue
		}
		obj, _, err := strict.Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("document %d (%s %s) does not decode strictly: %v\n%s", i, meta.APIVersion, meta.Kind, err, doc)
		}
		r.objs = append(r.objs, obj)
	}
	if len(r.objs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return r
}

func splitDocs(s string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+s, "\n---") {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func all[T runtime.Object](r *rendered) []T {
	var out []T
	for _, o := range r.objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T runtime.Object](t *testing.T, r *rendered) T {
	t.Helper()
	xs := all[T](r)
	if len(xs) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, got %d", zero, len(xs))
	}
	return xs[0]
}

// ofWebhook keeps the objects of the webhook component (not the certificate
// controller's Deployment or metrics Service).
func ofWebhook[T metav1.Object](objs []T) []T {
	var out []T
	for _, o := range objs {
		if o.GetLabels()["dnsguard.io/component"] == "webhook" {
			out = append(out, o)
		}
	}
	return out
}

// onlyOne is the single object of objs, or a fatal error naming what.
func onlyOne[T any](t *testing.T, what string, objs []T) T {
	t.Helper()
	if len(objs) != 1 {
		t.Fatalf("want exactly one %s, got %d", what, len(objs))
	}
	return objs[0]
}

func webhookDeployments(r *rendered) []*appsv1.Deployment {
	return ofWebhook(all[*appsv1.Deployment](r))
}

func webhookDeployment(t *testing.T, r *rendered) *appsv1.Deployment {
	t.Helper()
	return onlyOne(t, "webhook Deployment", webhookDeployments(r))
}

func webhookServices(r *rendered) []*corev1.Service {
	return ofWebhook(all[*corev1.Service](r))
}

func webhookService(t *testing.T, r *rendered) *corev1.Service {
	t.Helper()
	return onlyOne(t, "webhook Service", webhookServices(r))
}

// certsDeployment is the certificate controller's Deployment, or nil.
func certsDeployment(r *rendered) *appsv1.Deployment {
	for _, d := range all[*appsv1.Deployment](r) {
		if d.Labels["dnsguard.io/component"] == "certs" {
			return d
		}
	}
	return nil
}

// deref prints a pointer's value, or "unset".
func deref[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func hooks(m metav1.ObjectMeta) string { return m.Annotations["helm.sh/hook"] }

// valueSets are the ci values files plus the defaults: every rule that holds
// for all of them is checked against each.
func valueSets(t *testing.T) map[string][]string {
	sets := map[string][]string{"defaults": nil}
	files, err := filepath.Glob(filepath.Join(chartRel, "ci", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want >=4 ci values files, got %v (%v)", files, err)
	}
	for _, f := range files {
		sets[strings.TrimSuffix(filepath.Base(f), ".yaml")] = []string{"-f", f}
	}
	return sets
}

// nsLabels are the labels the API server gives a namespace, plus extras.
func nsLabels(name string, extra map[string]string) labels.Set {
	l := labels.Set{"kubernetes.io/metadata.name": name}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

func selector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if ls == nil {
		t.Fatal("selector is nil: it would match everything")
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("invalid selector: %v", err)
	}
	return s
}

// celEval compiles and runs a matchCondition expression the way the API
// server binds it: object (the Pod) and request (the AdmissionRequest), both
// as JSON-shaped maps.
func celEval(t *testing.T, expr string, pod *corev1.Pod, ns string, dryRun bool) bool {
	t.Helper()
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType), cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("matchCondition %q does not compile: %v", expr, iss.Err())
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		t.Fatalf("matchCondition %q has type %v, want bool", expr, ast.OutputType())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	js, _ := json.Marshal(pod)
	_ = json.Unmarshal(js, &obj)
	// dryRun is omitted unless set, as the API server's AdmissionRequest
	// (a *bool with omitempty) has it.
	req := map[string]any{"namespace": ns, "operation": "CREATE", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"}}
	if dryRun {
		req["dryRun"] = true
	}
	out, _, err := prg.Eval(map[string]any{
		"object":  obj,
		"request": req,
	})
	if err != nil {
		t.Fatalf("matchCondition %q on %s/%s: %v", expr, ns, pod.Name, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		t.Fatalf("matchCondition %q returned %T", expr, out.Value())
	}
	return b
}

// sent reports whether the API server would call the webhook for pod in a
// namespace with nsLbl: namespaceSelector, objectSelector and every
// matchCondition must allow it.
func sent(t *testing.T, w admissionregistrationv1.MutatingWebhook, pod *corev1.Pod, ns string, nsLbl labels.Set) bool {
	t.Helper()
	return sentAs(t, w, pod, ns, nsLbl, false)
}

// sentAs is sent for a dry-run request or not.
func sentAs(t *testing.T, w admissionregistrationv1.MutatingWebhook, pod *corev1.Pod, ns string, nsLbl labels.Set, dryRun bool) bool {
	t.Helper()
	if !selector(t, w.NamespaceSelector).Matches(nsLbl) {
		return false
	}
	if !selector(t, w.ObjectSelector).Matches(labels.Set(pod.Labels)) {
		return false
	}
	for _, mc := range w.MatchConditions {
		if !celEval(t, mc.Expression, pod, ns, dryRun) {
			return false
		}
	}
	return true
}

func plainPod(name string, lbl map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
}

func TestWebhookConfigurationSafety(t *testing.T) {
	for name, args := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			r := render(t, args...)
			mwc := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
			if mwc.Name != release {
				t.Errorf("webhook configuration %q, want %q (release name)", mwc.Name, release)
			}
			if len(mwc.Webhooks) == 0 {
				t.Fatal("no webhooks")
			}
			for _, w := range mwc.Webhooks {
				if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Ignore {
					t.Errorf("%s: failurePolicy %s, want Ignore", w.Name, deref(w.FailurePolicy))
				}
				if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
					t.Errorf("%s: sideEffects %s, want None", w.Name, deref(w.SideEffects))
				}
				if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
					t.Errorf("%s: admissionReviewVersions %v, want [v1]", w.Name, w.AdmissionReviewVersions)
				}
				if w.TimeoutSeconds == nil || *w.TimeoutSeconds < 1 || *w.TimeoutSeconds > 10 {
					t.Errorf("%s: timeoutSeconds %s, want 1..10", w.Name, deref(w.TimeoutSeconds))
				}
				if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
					t.Errorf("%s: reinvocationPolicy %s, want IfNeeded", w.Name, deref(w.ReinvocationPolicy))
				}
				if w.MatchPolicy == nil || *w.MatchPolicy != admissionregistrationv1.Equivalent {
					t.Errorf("%s: matchPolicy %s, want Equivalent", w.Name, deref(w.MatchPolicy))
				}
				if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
					!slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].APIGroups, []string{""}) {
					t.Errorf("%s: rules %+v, want pods CREATE in the core group only", w.Name, w.Rules)
				}
				if !reflect.DeepEqual(w.ClientConfig, mwc.Webhooks[0].ClientConfig) {
					t.Errorf("%s: clientConfig %+v differs from %s's %+v", w.Name, w.ClientConfig, mwc.Webhooks[0].Name, mwc.Webhooks[0].ClientConfig)
				}
				switch w.Name {
				case "pods.dnsguard.io":
					checkSelection(t, w, name)
				case "probe.dnsguard.io":
					checkProbeSelection(t, w)
				default:
					t.Errorf("unexpected webhook entry %s", w.Name)
				}
			}
			if mwc.Webhooks[0].Name != "pods.dnsguard.io" {
				t.Errorf("first webhook entry %s, want pods.dnsguard.io", mwc.Webhooks[0].Name)
			}
		})
	}
}

// checkProbeSelection: the admission check's entry sends only its dry-run
// probe pods in the release namespace; no pod that is stored, and nothing
// elsewhere. Negative control (run once): with its dry-run-only condition
// removed from the chart, "stored probe pod" failed.
func checkProbeSelection(t *testing.T, w admissionregistrationv1.MutatingWebhook) {
	probe := plainPod("probe", map[string]string{"dnsguard.io/probe": "admission-check"})
	optIn := map[string]string{"dnsguard.io/enabled": "true"}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		ns     string
		dryRun bool
		want   bool
	}{
		{"dry-run probe pod in the release namespace", probe, namespace, true, true},
		{"stored probe pod in the release namespace", probe, namespace, false, false},
		{"dry-run probe pod in an opted-in namespace", probe, "team-a", true, false},
		{"dry-run plain pod in the release namespace", plainPod("app", nil), namespace, true, false},
	} {
		if got := sentAs(t, w, tc.pod, tc.ns, nsLabels(tc.ns, optIn), tc.dryRun); got != tc.want {
			t.Errorf("probe entry, %s: sent=%v, want %v", tc.name, got, tc.want)
		}
	}
}

// checkSelection evaluates the selectors and match conditions on the pods
// and namespaces that matter.
func checkSelection(t *testing.T, w admissionregistrationv1.MutatingWebhook, set string) {
	optIn := map[string]string{"dnsguard.io/enabled": "true"}
	app := plainPod("app", map[string]string{"app": "web"})
	cases := []struct {
		name string
		pod  *corev1.Pod
		ns   string
		lbl  labels.Set
		want bool
	}{
		{"opted-in namespace", app, "team-a", nsLabels("team-a", optIn), true},
		{"namespace not opted in", app, "team-b", nsLabels("team-b", nil), false},
		{"opt-in label false", app, "team-b", nsLabels("team-b", map[string]string{"dnsguard.io/enabled": "false"}), false},
		{"kube-system even when labelled", app, "kube-system", nsLabels("kube-system", optIn), false},
		{"release namespace even when labelled", app, namespace, nsLabels(namespace, optIn), false},
		{"webhook's own pod", plainPod("webhook", map[string]string{"dnsguard.io/component": "webhook", "app.kubernetes.io/name": "dnsguard"}), "team-a", nsLabels("team-a", optIn), false},
		{"certificate controller pod", plainPod("certs", map[string]string{"dnsguard.io/component": "certs"}), "team-a", nsLabels("team-a", optIn), false},
		{"helm test pod", plainPod("test", map[string]string{"dnsguard.io/component": "test", "app.kubernetes.io/name": "dnsguard"}), "team-a", nsLabels("team-a", optIn), true},
	}
	hostDefault := plainPod("hostnet", nil)
	hostDefault.Spec.HostNetwork = true
	hostCFWHN := hostDefault.DeepCopy()
	hostCFWHN.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	notHost := plainPod("explicit-false", nil)
	notHost.Spec.HostNetwork = false
	cases = append(cases,
		struct {
			name string
			pod  *corev1.Pod
			ns   string
			lbl  labels.Set
			want bool
		}{"hostNetwork pod with node DNS", hostDefault, "team-a", nsLabels("team-a", optIn), false},
		struct {
			name string
			pod  *corev1.Pod
			ns   string
			lbl  labels.Set
			want bool
		}{"hostNetwork false", notHost, "team-a", nsLabels("team-a", optIn), true},
		struct {
			name string
			pod  *corev1.Pod
			ns   string
			lbl  labels.Set
			want bool
		}{"hostNetwork ClusterFirstWithHostNet", hostCFWHN, "team-a", nsLabels("team-a", optIn), set != "url-values"},
	)
	if set == "sidecar-values" {
		cases = append(cases, struct {
			name string
			pod  *corev1.Pod
			ns   string
			lbl  labels.Set
			want bool
		}{"extra excluded namespace", app, "monitoring", nsLabels("monitoring", optIn), false})
	}
	for _, tc := range cases {
		if got := sent(t, w, tc.pod, tc.ns, tc.lbl); got != tc.want {
			t.Errorf("%s: sent=%v, want %v", tc.name, got, tc.want)
		}
	}
	// The namespace exclusion must hold on its own in the match conditions
	// too, should a namespace somehow match the selector.
	everything := admissionregistrationv1.MutatingWebhook{
		NamespaceSelector: &metav1.LabelSelector{}, ObjectSelector: &metav1.LabelSelector{}, MatchConditions: w.MatchConditions,
	}
	for _, ns := range []string{"kube-system", namespace} {
		if sent(t, everything, app, ns, nsLabels(ns, optIn)) {
			t.Errorf("matchConditions alone let a pod in %s through", ns)
		}
	}
}

func TestDefaultsRenderEveryPart(t *testing.T) {
	r := render(t)
	dep := webhookDeployment(t, r)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %s, want 2", deref(dep.Spec.Replicas))
	}
	pdb := one[*policyv1.PodDisruptionBudget](t, r)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	if !selector(t, pdb.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("PDB selector does not select the webhook pods")
	}
	if !selector(t, dep.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("Deployment selector does not select its own pods")
	}
	svc := webhookService(t, r)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("Service does not select the webhook pods")
	}
	mwc := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
	ref := mwc.Webhooks[0].ClientConfig.Service
	if ref == nil || ref.Name != svc.Name || ref.Namespace != namespace || ref.Path == nil || *ref.Path != "/mutate" || ref.Port == nil || *ref.Port != svc.Spec.Ports[0].Port {
		t.Errorf("clientConfig.service %+v does not point at Service %s/%s /mutate", ref, namespace, svc.Name)
	}
	if len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("job mode renders a caBundle; Helm would overwrite the patched one on upgrade")
	}
	ps := dep.Spec.Template.Spec
	if len(ps.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	for _, tsc := range ps.TopologySpreadConstraints {
		if !selector(t, tsc.LabelSelector).Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("topology spread %s does not select the webhook pods", tsc.TopologyKey)
		}
	}
	c := ps.Containers[0]
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("webhook resources incomplete: %+v", c.Resources)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want HTTPS httpGet", name, p)
		}
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probe paths %s %s, want /healthz /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	// The TLS volume is the Secret the certificate controller manages.
	var secretVol string
	for _, v := range ps.Volumes {
		if v.Secret != nil {
			secretVol = v.Secret.SecretName
		}
	}
	if secretVol != release+"-tls" {
		t.Errorf("TLS secret volume %q, want %q", secretVol, release+"-tls")
	}
	// The ConfigMap holds the webhook --config in the contract's keys.
	cm := one[*corev1.ConfigMap](t, r)
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for _, k := range []string{"listen", "tlsCertFile", "tlsKeyFile", "nameservers", "clusterDomain", "defaultMode", "dnsOptions", "sidecar"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("config.yaml lacks %q", k)
		}
	}
	if cfg["defaultMode"] != "dnsconfig" || cfg["clusterDomain"] != "cluster.local" {
		t.Errorf("config defaults %v/%v", cfg["defaultMode"], cfg["clusterDomain"])
	}
	opts, _ := json.Marshal(cfg["dnsOptions"])
	if string(opts) != `[{"name":"ndots","value":"5"},{"name":"timeout","value":"2"},{"name":"attempts","value":"3"},{"name":"single-request-reopen"}]` {
		t.Errorf("dnsOptions %s, want ndots:5 timeout:2 attempts:3 single-request-reopen in that order", opts)
	}
	if !slices.Contains(c.Args, "--config=/etc/dnsguard/config/config.yaml") {
		t.Errorf("webhook args %v lack --config", c.Args)
	}
	// Config changes must roll the pods.
	if dep.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation")
	}
	// helm test: a pod in an opted-in namespace created by the test hook.
	var testPod *corev1.Pod
	for _, p := range all[*corev1.Pod](r) {
		if hooks(p.ObjectMeta) == "test" {
			testPod = p
		}
	}
	if testPod == nil {
		t.Fatal("no helm test pod")
	}
	var testNS *corev1.Namespace
	for _, n := range all[*corev1.Namespace](r) {
		if n.Name == testPod.Namespace {
			testNS = n
		}
	}
	if testNS == nil || hooks(testNS.ObjectMeta) != "test" {
		t.Fatalf("test pod namespace %q is not created by a test hook", testPod.Namespace)
	}
	if !sent(t, mwc.Webhooks[0], testPod, testNS.Name, nsLabels(testNS.Name, testNS.Labels)) {
		t.Error("the helm test pod would not be sent to the webhook: the test could never pass")
	}
	script := strings.Join(testPod.Spec.Containers[0].Args, "\n")
	for _, want := range []string{"single-request-reopen", "ndots:5", "exit"} {
		if !strings.Contains(script, want) {
			t.Errorf("test script does not check %q", want)
		}
	}
}

// TestConfigMapLoadsInTheWebhook feeds the rendered config.yaml of every
// values set to the webhook's own strict loader and validator, so a key the
// webhook does not know (or a value it rejects) fails here, not at pod start.
func TestConfigMapLoadsInTheWebhook(t *testing.T) {
	for name, args := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			r := render(t, args...)
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
			dep := webhookDeployments(r)
			if len(dep) == 1 {
				// The files the config names are where the Secret is mounted.
				c := dep[0].Spec.Template.Spec.Containers[0]
				mounted := false
				for _, m := range c.VolumeMounts {
					if filepath.Dir(cfg.TLSCertFile) == m.MountPath && filepath.Dir(cfg.TLSKeyFile) == m.MountPath {
						mounted = true
					}
				}
				if !mounted {
					t.Errorf("tlsCertFile %s is not inside a mounted volume", cfg.TLSCertFile)
				}
				if _, port, _ := strings.Cut(cfg.Listen, ":"); port != fmt.Sprint(c.Ports[0].ContainerPort) {
					t.Errorf("listen %s vs containerPort %d", cfg.Listen, c.Ports[0].ContainerPort)
				}
			}
		})
	}
}

// containersOf returns every container of a pod template.
func containersOf(ps corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(ps.InitContainers), ps.Containers...)
}

func TestPodsAreHardened(t *testing.T) {
	for name, args := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			r := render(t, args...)
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
			if name != "url-values" && len(webhookDeployments(r)) != 1 {
				t.Error("no webhook Deployment")
			}
			for where, ps := range specs {
				psc := ps.SecurityContext
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
				}
				if ps.HostNetwork || ps.HostPID || ps.HostIPC {
					t.Errorf("%s: uses host namespaces", where)
				}
				for _, c := range containersOf(ps) {
					sc := c.SecurityContext
					if sc == nil {
						t.Errorf("%s/%s: no securityContext", where, c.Name)
						continue
					}
					nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
					if !nonRoot {
						t.Errorf("%s/%s: runAsNonRoot not set", where, c.Name)
					}
					if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
						t.Errorf("%s/%s: readOnlyRootFilesystem not true", where, c.Name)
					}
					if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
						t.Errorf("%s/%s: allowPrivilegeEscalation not false", where, c.Name)
					}
					if sc.Privileged != nil && *sc.Privileged {
						t.Errorf("%s/%s: privileged", where, c.Name)
					}
					if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
						t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and no add", where, c.Name, sc.Capabilities)
					}
					if c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s/%s: no memory limit", where, c.Name)
					}
				}
			}
		})
	}
}

// rbacRule is a flattened PolicyRule for assertions.
func grants(rules []rbacv1.PolicyRule, resource, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		if (slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) && (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			out = append(out, r)
		}
	}
	return out
}

func TestRBACIsLeastPrivilege(t *testing.T) {
	r := render(t)
	roles := map[string][]rbacv1.PolicyRule{}
	for _, x := range all[*rbacv1.Role](r) {
		roles["Role/"+x.Namespace+"/"+x.Name] = x.Rules
	}
	for _, x := range all[*rbacv1.ClusterRole](r) {
		roles["ClusterRole/"+x.Name] = x.Rules
	}
	for where, rules := range roles {
		for _, rule := range rules {
			for _, s := range append(append(slices.Clone(rule.Verbs), rule.Resources...), rule.APIGroups...) {
				if s == "*" {
					t.Errorf("%s: wildcard in %+v", where, rule)
				}
			}
			for _, v := range []string{"delete", "deletecollection", "patch", "escalate", "bind", "impersonate"} {
				// The pre-delete cleanup hook deletes named objects only.
				if v == "delete" && strings.HasSuffix(where, "-cleanup") && len(rule.ResourceNames) > 0 {
					continue
				}
				if slices.Contains(rule.Verbs, v) {
					t.Errorf("%s: grants %s", where, v)
				}
			}
		}
	}
	secret, caSecret, mwcName := release+"-tls", release+"-ca", release
	// Certificate controller: Secrets and webhook configuration read, watch
	// and update, Lease read and update, all only by name (the watches use a
	// metadata.name field selector, which is what makes list/watch by
	// resourceNames work).
	certsRole := roles["Role/"+namespace+"/"+release+"-certs"]
	certsCR := roles["ClusterRole/"+release+"-certs"]
	if certsRole == nil || certsCR == nil {
		t.Fatalf("certificate controller RBAC missing; have %v", keys(roles))
	}
	for _, verb := range []string{"get", "list", "watch", "update"} {
		g := grants(certsRole, "secrets", verb)
		if len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{secret, caSecret}) {
			t.Errorf("certs Role %s secrets: %+v, want one rule limited to %s and %s", verb, g, secret, caSecret)
		}
		g = grants(certsCR, "mutatingwebhookconfigurations", verb)
		if len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{mwcName}) {
			t.Errorf("certs ClusterRole %s mutatingwebhookconfigurations: %+v, want one rule limited to %s", verb, g, mwcName)
		}
	}
	for _, verb := range []string{"get", "update"} {
		g := grants(certsRole, "leases", verb)
		if len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{release + "-certs"}) {
			t.Errorf("certs Role %s leases: %+v, want one rule limited to %s-certs", verb, g, release)
		}
	}
	if len(certsCR) != 1 {
		t.Errorf("certs ClusterRole has %d rules, want only the webhook configuration", len(certsCR))
	}
	// The webhook itself: only its serving Secret, by name (never the CA
	// Secret), and never writes.
	for where, rules := range roles {
		if strings.Contains(where, "-certs") || strings.HasSuffix(where, "-cleanup") || strings.HasSuffix(where, "-admission-check") {
			continue
		}
		for _, rule := range rules {
			if slices.Contains(rule.Resources, "secrets") && !slices.Equal(rule.ResourceNames, []string{secret}) {
				t.Errorf("%s: webhook can read secrets other than %s: %+v", where, secret, rule)
			}
			for _, v := range []string{"create", "update"} {
				if slices.Contains(rule.Verbs, v) {
					t.Errorf("%s: webhook can %s %v", where, v, rule.Resources)
				}
			}
		}
	}
	// The admission check hook: create pods (it only dry-runs them) in the
	// release namespace, nothing else, and no ClusterRole.
	check := roles["Role/"+namespace+"/"+release+"-admission-check"]
	if len(check) != 1 || !slices.Equal(check[0].Resources, []string{"pods"}) || !slices.Equal(check[0].Verbs, []string{"create"}) {
		t.Errorf("admission check Role %+v, want one rule: pods create", check)
	}
	if _, ok := roles["ClusterRole/"+release+"-admission-check"]; ok {
		t.Error("admission check has a ClusterRole")
	}
	// DNS discovery only GETs the one Service (webhook/discovery.go).
	disc := roles["Role/kube-system/"+release+"-dns-discovery"]
	if g := grants(disc, "services", "get"); len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{"kube-dns"}) {
		t.Errorf("DNS discovery: services get %+v, want one rule limited to kube-dns (have %v)", g, keys(roles))
	}
	for _, v := range []string{"list", "watch"} {
		if g := grants(disc, "services", v); len(g) != 0 {
			t.Errorf("DNS discovery can %s services: %+v", v, g)
		}
	}
	if g := grants(roles["ClusterRole/"+release], "namespaces", "watch"); len(g) != 1 {
		t.Error("no namespaces watch for the default-mode informer")
	}
	// Every binding names a role that exists and the right ServiceAccount.
	for _, b := range all[*rbacv1.RoleBinding](r) {
		if roles["Role/"+b.Namespace+"/"+b.RoleRef.Name] == nil {
			t.Errorf("RoleBinding %s/%s references missing Role %s", b.Namespace, b.Name, b.RoleRef.Name)
		}
	}
	for _, b := range all[*rbacv1.ClusterRoleBinding](r) {
		if roles["ClusterRole/"+b.RoleRef.Name] == nil {
			t.Errorf("ClusterRoleBinding %s references missing ClusterRole %s", b.Name, b.RoleRef.Name)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestCertificateController: the controller Deployment runs `certs
// controller` under its own ServiceAccount with both Secret names, and the
// webhook mounts only the serving Secret and watches it by name.
func TestCertificateController(t *testing.T) {
	if _, stderr, err := helmTemplate(t, "--set", "certificates.mode=job"); err == nil || !strings.Contains(stderr, "/certificates/mode") {
		t.Errorf("mode job (the removed hook-Job alias): err=%v stderr=%s, want a schema failure naming certificates.mode", err, stderr)
	}
	r := render(t) // certificates.mode=controller is the default
	d := certsDeployment(r)
	if d == nil {
		t.Fatal("no certificate controller Deployment")
	}
	ps := d.Spec.Template.Spec
	if ps.ServiceAccountName != release+"-certs" || ps.ServiceAccountName == webhookDeployment(t, r).Spec.Template.Spec.ServiceAccountName {
		t.Errorf("controller ServiceAccount %q: want its own %s-certs", ps.ServiceAccountName, release)
	}
	args := strings.Join(ps.Containers[0].Args, " ")
	for _, want := range []string{"controller", "--secret-name=" + release + "-tls", "--ca-secret-name=" + release + "-ca", "--namespace=" + namespace,
		"--webhook-config-name=" + release, "--service-name=" + release, "--validity=8760h", "--ca-validity=87600h", "--lease-name=" + release + "-certs"} {
		if !strings.Contains(args, want) {
			t.Errorf("controller args %q lack %q", args, want)
		}
	}
	for _, v := range ps.Volumes {
		if v.Secret != nil {
			t.Errorf("controller mounts Secret %s; it reads through the API", v.Secret.SecretName)
		}
	}
	wh := webhookDeployment(t, r).Spec.Template.Spec
	for _, v := range wh.Volumes {
		if v.Secret != nil && v.Secret.SecretName != release+"-tls" {
			t.Errorf("webhook mounts Secret %s", v.Secret.SecretName)
		}
	}
	if a := strings.Join(wh.Containers[0].Args, " "); !strings.Contains(a, "--tls-secret="+namespace+"/"+release+"-tls") {
		t.Errorf("webhook args %q do not watch the serving Secret", a)
	}
	for _, j := range all[*batchv1.Job](r) {
		if hooks(j.ObjectMeta) != "pre-delete" {
			t.Errorf("job %s (%s): only the pre-delete cleanup Job is expected", j.Name, hooks(j.ObjectMeta))
		}
	}
	// The admission check runs once the install is done and only reads what
	// it produced (certificates never come from an install hook).
	for _, p := range all[*corev1.Pod](r) {
		if want := map[string]string{release + "-admission-check": "post-install", release + "-test-dns": "test"}[p.Name]; hooks(p.ObjectMeta) != want {
			t.Errorf("pod %s: hooks %q, want %q", p.Name, hooks(p.ObjectMeta), want)
		}
	}
	// Other modes: no controller, no --tls-secret.
	r = render(t, "--set", "certificates.mode=certManager")
	if certsDeployment(r) != nil {
		t.Error("certManager mode renders the certificate controller")
	}
	if a := strings.Join(webhookDeployment(t, r).Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(a, "--tls-secret") {
		t.Errorf("certManager mode: webhook args %q", a)
	}
}

func TestCertificateModes(t *testing.T) {
	t.Run("certManager", func(t *testing.T) {
		r := render(t, "--set", "certificates.mode=certManager")
		if certsDeployment(r) != nil {
			t.Error("cert-manager mode still renders the certificate controller")
		}
		mwc := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
		inject := mwc.Annotations["cert-manager.io/inject-ca-from"]
		kinds := map[string]*unstructured.Unstructured{}
		for _, u := range all[*unstructured.Unstructured](r) {
			kinds[u.GetKind()+"/"+u.GetName()] = u
		}
		cert := kinds["Certificate/"+strings.TrimPrefix(inject, namespace+"/")]
		if cert == nil {
			t.Fatalf("inject-ca-from %q names no rendered Certificate (have %v)", inject, keys(kinds))
		}
		if s, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); s != release+"-tls" {
			t.Errorf("serving Certificate secret %q", s)
		}
		dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if !slices.Contains(dns, "dnsguard."+namespace+".svc") {
			t.Errorf("serving dnsNames %v lack the Service name", dns)
		}
		issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
		ca := kinds["Issuer/"+issuer]
		if ca == nil {
			t.Fatalf("issuer %s not rendered", issuer)
		}
		caSecret, _, _ := unstructured.NestedString(ca.Object, "spec", "ca", "secretName")
		var caCert *unstructured.Unstructured
		for _, u := range kinds {
			if s, _, _ := unstructured.NestedString(u.Object, "spec", "secretName"); u.GetKind() == "Certificate" && s == caSecret {
				caCert = u
			}
		}
		if caCert == nil {
			t.Fatal("no CA Certificate behind the CA Issuer")
		}
		if isCA, _, _ := unstructured.NestedBool(caCert.Object, "spec", "isCA"); !isCA {
			t.Error("CA Certificate is not isCA")
		}
		self, _, _ := unstructured.NestedString(caCert.Object, "spec", "issuerRef", "name")
		if _, ok, _ := unstructured.NestedMap(kinds["Issuer/"+self].Object, "spec", "selfSigned"); !ok {
			t.Error("CA Certificate is not issued by a selfSigned Issuer")
		}
	})
	t.Run("provided", func(t *testing.T) {
		pemCA := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
		r := render(t, "--set", "certificates.mode=provided", "--set", "certificates.secretName=mine", "--set-string", "certificates.caBundle="+pemCA)
		mwc := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
		if string(mwc.Webhooks[0].ClientConfig.CABundle) != pemCA {
			t.Errorf("caBundle %q, want the provided PEM", mwc.Webhooks[0].ClientConfig.CABundle)
		}
		if certsDeployment(r) != nil {
			t.Error("provided mode renders the certificate controller")
		}
		if v := webhookDeployment(t, r).Spec.Template.Spec.Volumes; !slices.ContainsFunc(v, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "mine" }) {
			t.Error("Deployment does not mount the provided Secret")
		}
		if _, stderr, err := helmTemplate(t, "--set", "certificates.mode=provided"); err == nil || !strings.Contains(stderr, "caBundle") {
			t.Errorf("provided mode without caBundle: err=%v stderr=%s, want a failure naming caBundle", err, stderr)
		}
	})
	t.Run("url", func(t *testing.T) {
		r := render(t, "--set", "webhookConfiguration.url=https://127.0.0.1:8443/mutate")
		mwc := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
		cc := mwc.Webhooks[0].ClientConfig
		if cc.URL == nil || *cc.URL != "https://127.0.0.1:8443/mutate" || cc.Service != nil {
			t.Errorf("clientConfig %+v, want URL only", cc)
		}
		if n := len(webhookDeployments(r)) + len(webhookServices(r)) + len(all[*policyv1.PodDisruptionBudget](r)); n != 0 {
			t.Errorf("URL mode renders %d in-cluster webhook objects", n)
		}
		if d := certsDeployment(r); d == nil {
			t.Error("URL mode: no certificate controller")
		} else if a := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(a, "--hosts=127.0.0.1") {
			t.Errorf("controller args %s lack the URL host as SAN", a)
		}
	})
}

func TestValuesReachTheManifests(t *testing.T) {
	r := render(t, "--set", "defaultMode=sidecar", "--set", "clusterDomain=corp.example", "--set", "nameservers={10.0.0.10}",
		"--set", "sidecar.fallback=false", "--set", "priorityClassName=high", "--set", "replicaCount=3", "--set", "logLevel=debug")
	dep := webhookDeployment(t, r)
	if *dep.Spec.Replicas != 3 || dep.Spec.Template.Spec.PriorityClassName != "high" {
		t.Errorf("replicas %d priorityClassName %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.PriorityClassName)
	}
	var cfg struct {
		Nameservers   []string `json:"nameservers"`
		LogLevel      string   `json:"logLevel"`
		ClusterDomain string   `json:"clusterDomain"`
		DefaultMode   string   `json:"defaultMode"`
		Sidecar       struct {
			Image    string `json:"image"`
			Fallback bool   `json:"fallback"`
		} `json:"sidecar"`
	}
	if err := yaml.Unmarshal([]byte(one[*corev1.ConfigMap](t, r).Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Nameservers, []string{"10.0.0.10"}) || cfg.ClusterDomain != "corp.example" || cfg.DefaultMode != "sidecar" || cfg.LogLevel != "debug" || cfg.Sidecar.Fallback || !strings.HasPrefix(cfg.Sidecar.Image, "ghcr.io/dnsguard/resolver:") {
		t.Errorf("config %+v does not carry the values", cfg)
	}
	for _, ro := range all[*rbacv1.Role](r) {
		if strings.HasSuffix(ro.Name, "dns-discovery") {
			t.Error("DNS discovery Role rendered although nameservers are given")
		}
	}
	// In sidecar mode the helm test checks for the 127.0.0.1 nameserver.
	for _, p := range all[*corev1.Pod](r) {
		if hooks(p.ObjectMeta) != "test" {
			continue
		}
		if s := strings.Join(p.Spec.Containers[0].Args, ""); !strings.Contains(s, "127.0.0.1") || !strings.Contains(s, "corp\\.example") {
			t.Errorf("sidecar-mode test script does not check 127.0.0.1 and the search path:\n%s", s)
		}
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	bad := [][]string{
		{"--set", "defaultMode=bogus"},
		{"--set", "webhookConfiguration.failurePolicy=Sometimes"},
		{"--set", "webhookConfiguration.timeoutSeconds=30"},
		{"--set", "certificates.mode=vault"},
		{"--set", "noSuchValue=1"},
		{"--set", "sidecar.image.unknown=x"},
		{"--set", "nameservers={not-an-ip}"},
		{"--set", "replicaCount=0"},
		{"--set", "webhookConfiguration.url=http://insecure:8080/mutate"},
		{"--set", "certificates.caValidity=30days"},
	}
	for _, args := range bad {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			_, stderr, err := helmTemplate(t, args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want a schema error", args)
			}
			if !strings.Contains(stderr, "schema") && !strings.Contains(stderr, "values don't meet") {
				t.Errorf("failed for another reason than the schema: %s", stderr)
			}
		})
	}
	// And the good counterpart passes, so the failures above are about the
	// values, not a broken chart.
	if _, stderr, err := helmTemplate(t, "--set", "defaultMode=sidecar", "--set", "webhookConfiguration.timeoutSeconds=10"); err != nil {
		t.Fatalf("valid values rejected: %v\n%s", err, stderr)
	}
}

// TestEveryValueIsCommented enforces the chart convention: every value in
// values.yaml has a comment right above it that starts with its name (plain
// or dotted). A commented map (resources, nodeSelector …) covers its
// free-form children; an uncommented section needs comments on its children.
func TestEveryValueIsCommented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartRel, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var stack []string // keys by indentation level (2 spaces)
	covered := -1      // indentation of a commented map whose children are free-form
	var missing []string
	checked := 0
	for i, l := range lines {
		trim := strings.TrimSpace(l)
		if trim == "" || strings.HasPrefix(trim, "#") || strings.HasPrefix(trim, "-") || !strings.Contains(trim, ":") {
			continue
		}
		indent := (len(l) - len(strings.TrimLeft(l, " "))) / 2
		if covered >= 0 && indent > covered {
			continue
		}
		covered = -1
		if indent > len(stack) {
			continue // inside a list item
		}
		key, rest, _ := strings.Cut(trim, ":")
		stack = append(stack[:indent], key)
		dotted := strings.Join(stack, ".")
		var comment string
		if i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			j := i - 1
			for j > 0 && strings.HasPrefix(strings.TrimSpace(lines[j-1]), "#") {
				j--
			}
			comment = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[j]), "#"))
		}
		ok := comment != "" && (strings.HasPrefix(comment, key) || strings.HasPrefix(comment, dotted))
		isMap := strings.TrimSpace(rest) == "" && i+1 < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "-")
		if isMap {
			if ok {
				covered = indent
			}
			continue
		}
		checked++
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (comment: %q)", dotted, comment))
		}
	}
	if checked < 40 {
		t.Errorf("only %d values checked; the parser lost track of values.yaml", checked)
	}
	if len(missing) > 0 {
		t.Errorf("values without a comment starting with their name:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestSchemaIsClosedAndDescribed walks values.schema.json: every object
// with declared properties rejects unknown keys, and every property has a
// description (helm shows neither otherwise, and a typo in -f values.yaml
// would be silently ignored).
func TestSchemaIsClosedAndDescribed(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartRel, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	props := 0
	var walk func(path string, n map[string]any)
	walk = func(path string, n map[string]any) {
		if p, ok := n["properties"].(map[string]any); ok {
			// global is the one open object: a parent chart's globals are
			// merged into it when dnsguard is a subchart.
			if ap, ok := n["additionalProperties"].(bool); (!ok || ap) && path != "values.global" {
				t.Errorf("%s: additionalProperties is not false", path)
			}
			for k, v := range p {
				child, _ := v.(map[string]any)
				props++
				if _, ref := child["$ref"]; !ref {
					if d, _ := child["description"].(string); d == "" {
						t.Errorf("%s.%s: no description", path, k)
					}
				}
				walk(path+"."+k, child)
			}
		}
		if defs, ok := n["$defs"].(map[string]any); ok {
			for k, v := range defs {
				child, _ := v.(map[string]any)
				walk("$defs."+k, child)
			}
		}
	}
	walk("values", root)
	if props < 50 {
		t.Errorf("only %d schema properties; values.yaml has more", props)
	}
}

// TestPDBOnlyWithSeveralReplicas: minAvailable 1 over one replica blocks
// every node drain, so the PDB exists only with more than one replica.
func TestPDBOnlyWithSeveralReplicas(t *testing.T) {
	for _, tc := range []struct {
		replicas string
		want     int
	}{{"1", 0}, {"2", 1}, {"3", 1}} {
		r := render(t, "--set", "replicaCount="+tc.replicas)
		if n := len(all[*policyv1.PodDisruptionBudget](r)); n != tc.want {
			t.Errorf("replicaCount=%s: %d PodDisruptionBudgets, want %d", tc.replicas, n, tc.want)
		}
	}
}

// TestUninstallDeletesWebhookConfigurationFirst: a pre-delete hook deletes
// the webhook configuration (and in job mode the Secrets Helm does not
// track) before Helm removes the Deployment and Service; its RBAC names
// exactly those objects and exists before the Job runs.
func TestUninstallDeletesWebhookConfigurationFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		secrets string
	}{
		{"controller", nil, release + "-tls," + release + "-ca"},
		{"certManager", []string{"--set", "certificates.mode=certManager"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			var job *batchv1.Job
			for _, j := range all[*batchv1.Job](r) {
				if hooks(j.ObjectMeta) == "pre-delete" {
					job = j
				}
			}
			if job == nil {
				t.Fatal("no pre-delete Job")
			}
			args := strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ")
			if !strings.Contains(args, "cleanup") || !strings.Contains(args, "--webhook-config-name="+release) {
				t.Errorf("cleanup args %q", args)
			}
			if got := strings.Contains(args, "--secret-names="); got != (tc.secrets != "") || (tc.secrets != "" && !strings.Contains(args, "--secret-names="+tc.secrets)) {
				t.Errorf("cleanup args %q, want secrets %q", args, tc.secrets)
			}
			// In controller mode the hook stops the controller and deletes
			// its Lease (names as deployment-certs.yaml gives them).
			for _, a := range []string{"--controller-deployment=" + release + "-certs", "--lease-name=" + release + "-certs"} {
				if strings.Contains(args, a) != (tc.secrets != "") {
					t.Errorf("cleanup args %q: %s present = %v, want %v", args, a, strings.Contains(args, a), tc.secrets != "")
				}
			}
			// What a failed admission check hook left goes too, by name.
			check := release + "-admission-check"
			if !strings.Contains(args, "--admission-check-name="+check) {
				t.Errorf("cleanup args %q lack --admission-check-name=%s", args, check)
			}
			var role *rbacv1.Role
			for _, ro := range all[*rbacv1.Role](r) {
				if ro.Name == job.Spec.Template.Spec.ServiceAccountName {
					role = ro
				}
			}
			if role == nil {
				t.Fatal("no cleanup Role")
			}
			for _, res := range []string{"pods", "serviceaccounts", "roles", "rolebindings"} {
				if g := grants(role.Rules, res, "delete"); len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{check}) {
					t.Errorf("cleanup may delete %s %+v, want only %s", res, g, check)
				}
			}
			sa := job.Spec.Template.Spec.ServiceAccountName
			var cr *rbacv1.ClusterRole
			for _, c := range all[*rbacv1.ClusterRole](r) {
				if c.Name == sa {
					cr = c
				}
			}
			if cr == nil || hooks(cr.ObjectMeta) != "pre-delete" || cr.Annotations["helm.sh/hook-weight"] != "-10" {
				t.Fatalf("cleanup ClusterRole %v is not a pre-delete hook before the Job", cr)
			}
			if g := grants(cr.Rules, "mutatingwebhookconfigurations", "delete"); len(g) != 1 || !slices.Equal(g[0].ResourceNames, []string{release}) {
				t.Errorf("cleanup may delete %+v, want only %s", g, release)
			}
			for _, rb := range all[*rbacv1.ClusterRoleBinding](r) {
				if rb.RoleRef.Name == sa && (len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa || hooks(rb.ObjectMeta) != "pre-delete") {
					t.Errorf("cleanup binding %+v", rb)
				}
			}
		})
	}
}

// TestGracefulShutdownTimings: the webhook drains itself (--shutdown-delay)
// and the kubelet's grace period outlasts delay + timeout.
func TestGracefulShutdownTimings(t *testing.T) {
	for _, delay := range []string{"10", "0", "45"} {
		dep := webhookDeployment(t, render(t, "--set", "shutdownDelaySeconds="+delay))
		c := dep.Spec.Template.Spec.Containers[0]
		args := strings.Join(c.Args, " ")
		if !strings.Contains(args, "--shutdown-delay="+delay+"s") || !strings.Contains(args, "--shutdown-timeout=20s") {
			t.Errorf("delay %s: args %q", delay, args)
		}
		var d int64
		fmt.Sscan(delay, &d)
		if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= d+20 {
			t.Errorf("delay %s: terminationGracePeriodSeconds %v, want > delay+20", delay, g)
		}
	}
}
