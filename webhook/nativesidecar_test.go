package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiversion "k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The detector's decisions, against client-go's fake clientset: it stands
// in for API servers of every version, which cannot all run here. What a
// real API server does with the probe pod (1.29 with SidecarContainers on
// and off, 1.37) is checked by test/compat against real kube-apiservers.
func TestNativeSidecarDetector(t *testing.T) {
	node := func(name, kubelet, os string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet, OperatingSystem: os}}}
	}
	// gateOff mimics what an API server with SidecarContainers off does
	// to a created pod: it drops restartPolicy from init containers.
	gateOff := func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy()
		for i := range p.Spec.InitContainers {
			p.Spec.InitContainers[i].RestartPolicy = nil
		}
		return true, p, nil
	}
	forbidden := func(resource string) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", errors.New("RBAC"))
		}
	}
	tests := []struct {
		name    string
		version string
		nodes   []runtime.Object
		pods    k8stesting.ReactionFunc // nil: the fake keeps the pod as sent
		nodeErr bool
		verErr  bool
		// want is a substring of the answer; "" means available.
		want string
		// probed and listed: whether the probe pod and the node list must
		// have been asked for (newer servers must not be asked: fewer
		// permissions needed, nothing to go wrong).
		probed, listed bool
		unknown        bool
	}{
		{name: "1.27 has none", version: "v1.27.16", want: "has no native sidecars"},
		{name: "1.28 gate off (alpha default)", version: "v1.28.15", pods: gateOff, want: "alpha in 1.28", probed: true},
		{name: "1.28 gate on, kubelets new", version: "v1.28.15", nodes: []runtime.Object{node("a", "v1.29.6", "linux")}, want: "", probed: true, listed: true},
		{name: "1.29 gate on, kubelets 1.29", version: "v1.29.6", nodes: []runtime.Object{node("a", "v1.29.6", "linux"), node("b", "v1.29.0", "linux")}, want: "", probed: true, listed: true},
		{name: "1.29 gate off", version: "v1.29.6", pods: gateOff, want: "SidecarContainers feature gate is off", probed: true},
		{name: "1.31 with a 1.28 kubelet", version: "v1.31.14", nodes: []runtime.Object{node("a", "v1.31.14", "linux"), node("old", "v1.28.15", "linux")}, want: "node old runs kubelet v1.28.15", probed: true, listed: true},
		{name: "1.31 old Windows kubelet does not count", version: "v1.31.14", nodes: []runtime.Object{node("win", "v1.28.15", "windows")}, want: "", probed: true, listed: true},
		{name: "vendor suffix", version: "v1.30.14-gke.1200", nodes: []runtime.Object{node("a", "v1.30.14-gke.1200", "linux")}, want: "", probed: true, listed: true},
		{name: "1.32 skips the kubelets", version: "v1.32.13", want: "", probed: true},
		{name: "1.33 asks nothing more", version: "v1.33.13", want: ""},
		{name: "1.37", version: "v1.37.2", want: ""},
		{name: "version unknown", verErr: true, want: "unknown", unknown: true},
		{name: "probe forbidden", version: "v1.30.14", pods: forbidden("pods"), want: "unknown", probed: true, unknown: true},
		{name: "nodes forbidden", version: "v1.30.14", nodeErr: true, want: "unknown", probed: true, listed: true, unknown: true},
		{name: "unreadable kubelet version", version: "v1.30.14", nodes: []runtime.Object{node("x", "garbage", "linux")}, want: "unknown", probed: true, listed: true, unknown: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset(tc.nodes...)
			c.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &apiversion.Info{GitVersion: tc.version}
			if tc.verErr {
				c.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("connection refused")
				})
			}
			if tc.pods != nil {
				c.PrependReactor("create", "pods", tc.pods)
			}
			if tc.nodeErr {
				c.PrependReactor("list", "nodes", forbidden("nodes"))
			}
			d := NewNativeSidecarDetector(c, "dnsguard", "ghcr.io/dnsguard/resolver:0.2.0", 0, quietLogger())
			if got := d.NativeSidecarsUnavailable(); got == "" {
				t.Fatal("available before the first check; want the safe answer")
			}
			err := d.Refresh(context.Background())
			if (err != nil) != tc.unknown {
				t.Errorf("Refresh error %v, want unknown=%v", err, tc.unknown)
			}
			got := d.NativeSidecarsUnavailable()
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
			var probed, listed bool
			for _, a := range c.Actions() {
				switch {
				case a.GetVerb() == "create" && a.GetResource().Resource == "pods":
					probed = true
					ca := a.(k8stesting.CreateActionImpl)
					if len(ca.CreateOptions.DryRun) != 1 || ca.CreateOptions.DryRun[0] != metav1.DryRunAll {
						t.Errorf("probe pod created without dryRun=All: %v", ca.CreateOptions.DryRun)
					}
					if ns := a.GetNamespace(); ns != "dnsguard" {
						t.Errorf("probe pod in namespace %q, want dnsguard", ns)
					}
				case a.GetVerb() == "list" && a.GetResource().Resource == "nodes":
					listed = true
				}
			}
			if probed != tc.probed || listed != tc.listed {
				t.Errorf("probed=%v listed=%v, want %v %v", probed, listed, tc.probed, tc.listed)
			}
		})
	}
}

// A check that fails after one that succeeded must not keep the old
// "available": an API server downgraded or a gate turned off since would
// otherwise get pods it rejects.
func TestNativeSidecarDetectorForgetsOnError(t *testing.T) {
	c := fake.NewClientset()
	c.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &apiversion.Info{GitVersion: "v1.37.2"}
	d := NewNativeSidecarDetector(c, "dnsguard", "img", 0, quietLogger())
	if err := d.Refresh(context.Background()); err != nil || d.NativeSidecarsUnavailable() != "" {
		t.Fatalf("1.37: err %v, answer %q", err, d.NativeSidecarsUnavailable())
	}
	c.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("timeout")
	})
	if err := d.Refresh(context.Background()); err == nil {
		t.Fatal("no error from a failed version call")
	}
	if got := d.NativeSidecarsUnavailable(); !strings.Contains(got, "unknown") {
		t.Errorf("after a failed check: %q, want unknown", got)
	}
}

// The probe pod must pass the restricted Pod Security level (the
// webhook's namespace may enforce it) and opt out of dnsguard itself.
func TestProbePodShape(t *testing.T) {
	p := probePod("img")
	if p.Annotations[AnnotationMode] != ModeOff {
		t.Errorf("probe pod does not opt out: %v", p.Annotations)
	}
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s not restricted: %+v", c.Name, sc)
		}
		if c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no limits (a quota on limits would refuse it)", c.Name)
		}
	}
	if rp := p.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Error("probe init container is not a native sidecar")
	}
}

// Through the server: a sidecar-mode pod while native sidecars are
// unavailable is patched in dnsconfig mode with a warning, counted by
// reason; the gauge and /explain say so. Negative control (run once on
// 2026-12-07): with Decide ignoring env.NativeSidecarsUnavailable, this
// test fails on the sidecar being injected and on the counter staying 0.
func TestNativeSidecarsUnavailableThroughServer(t *testing.T) {
	cfg := testConfig()
	src := StaticNativeSidecars("API server v1.29.6 drops restartPolicy from init containers: its SidecarContainers feature gate is off")
	srv := NewServer(cfg, Options{Logger: quietLogger(), NativeSidecars: src})
	review := readCase(t, "sidecar-annotation")
	out := postReview(t, srv, review)
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(review, &in); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(applyResponse(t, in.Request.Object.Raw, out.Response), &pod); err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 0 {
		t.Errorf("sidecar injected although native sidecars are unavailable")
	}
	if pod.Spec.DNSPolicy != corev1.DNSNone || pod.Spec.DNSConfig == nil || pod.Spec.DNSConfig.Nameservers[0] != "10.96.0.10" {
		t.Errorf("not patched in dnsconfig mode: %v %+v", pod.Spec.DNSPolicy, pod.Spec.DNSConfig)
	}
	if len(out.Response.Warnings) != 1 || !strings.Contains(out.Response.Warnings[0], "SidecarContainers feature gate is off") {
		t.Errorf("warnings %q", out.Response.Warnings)
	}
	metrics := do(srv, http.MethodGet, "/metrics", "", nil).Body.String()
	for _, want := range []string{
		`dnsguard_webhook_sidecar_fallbacks_total{reason="native-sidecars-unavailable"} 1`,
		`dnsguard_webhook_sidecar_fallbacks_total{reason="host-network"} 0`,
		`dnsguard_webhook_native_sidecars 0`,
		`dnsguard_webhook_reviews_total{mode="dnsconfig",result="patched"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	podJSON := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"demo","annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
	if ex := explain(t, srv, "?namespace=team-a", podJSON); ex.Mode != ModeDNSConfig || ex.NativeSidecars != string(src) {
		t.Errorf("/explain mode %q nativeSidecars %q", ex.Mode, ex.NativeSidecars)
	}

	on := NewServer(cfg, Options{Logger: quietLogger(), NativeSidecars: StaticNativeSidecars("")})
	if ex := explain(t, on, "?namespace=team-a", podJSON); ex.Mode != ModeSidecar || ex.NativeSidecars != "available" {
		t.Errorf("available: /explain mode %q nativeSidecars %q", ex.Mode, ex.NativeSidecars)
	}
	if !strings.Contains(do(on, http.MethodGet, "/metrics", "", nil).Body.String(), "dnsguard_webhook_native_sidecars 1\n") {
		t.Error("gauge not 1 when available")
	}
}
