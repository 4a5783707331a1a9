//go:build apiserver

package compat

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/internal/corpus"
)

const (
	chartDir         = "../../charts/dnsguard"
	releaseNamespace = "dnsguard"
)

// testChart renders the chart as a user of s would (helm template
// --kube-version of the server's own version: `helm template | kubectl
// apply`, which the chart's README shows, skips the chart's kubeVersion
// check, so every object must be one that version accepts) and dry-run
// creates every object with strict field validation: a field the server
// does not know is an error, not a warning and a silently dropped setting.
// Kinds the server does not serve (CRD-backed: ServiceMonitor, ...; off by
// default) are skipped and listed.
func testChart(t *testing.T, c *cluster.Cluster, s server) {
	for _, v := range []struct {
		name string
		set  []string
	}{
		{"defaults", nil},
		// The node cache needs the cluster DNS IP: helm template has no
		// cluster to look it up in.
		{"nodeCache", []string{"--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=" + cluster.ClusterDNS}},
	} {
		t.Run(v.name, func(t *testing.T) {
			// A release (and namespace) per rendering: dry-run creates of
			// the second must not meet what the first created for real.
			release := "dnsguard-" + strings.ToLower(v.name)
			objs := render(t, release, s.version, v.set...)
			created, skipped := dryRunCreate(t, c, release, objs)
			t.Logf("%d objects accepted by %s; not served, skipped: %v", created, s.name, skipped)
			// The chart has a dozen kinds the core API serves; fewer
			// means rendering or the mapper went wrong, not a pass.
			if created < 10 {
				t.Fatalf("only %d of %d objects dry-run created", created, len(objs))
			}
		})
	}
	if s.version == "v1.29.6" {
		t.Run("strict-validation-catches-newer-fields", func(t *testing.T) { checkStrictCatchesNewerFields(t, c) })
	}
}

// render runs bin/helm template for release (installed in the namespace of
// the same name) and decodes every document, test hooks included.
func render(t *testing.T, release, kubeVersion string, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", release, chartDir, "--namespace", release, "--kube-version", kubeVersion}, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, "helm"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return decode(t, &stdout)
}

func decode(t *testing.T, r io.Reader) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("decode rendered chart: %v", err)
		}
		if len(m) == 0 {
			continue // an empty document between two ---
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// dryRunCreate dry-run creates objs (namespaced ones in their namespace,
// default ns, created for real first; Namespace objects before anything
// else so none meets one created that way) and returns how many were
// accepted and the kinds the server does not serve. ServiceAccounts are
// created for real, right after the Namespaces: a Pod is admitted only when
// its ServiceAccount exists (Helm creates the admission check hook's before
// its Pod), and a dry-run one never does.
func dryRunCreate(t *testing.T, c *cluster.Cluster, ns string, objs []*unstructured.Unstructured) (int, []string) {
	t.Helper()
	cfg := c.RESTConfig()
	var warnings warningLog
	cfg.WarningHandler = &warnings
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client().Discovery()))
	created := 0
	skipped := map[string]bool{}
	objs = append([]*unstructured.Unstructured(nil), objs...)
	rank := map[string]int{"Namespace": 0, "ServiceAccount": 1}
	order := func(o *unstructured.Unstructured) int {
		if r, ok := rank[o.GetKind()]; ok {
			return r
		}
		return 2
	}
	sort.SliceStable(objs, func(i, j int) bool { return order(objs[i]) < order(objs[j]) })
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		what := gvk.Kind + " " + o.GetName()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			skipped[gvk.GroupVersion().String()+" "+gvk.Kind] = true
			continue
		} else if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			objNS := o.GetNamespace()
			if objNS == "" {
				objNS = ns
			}
			corpus.EnsureNamespace(t, c.Client(), objNS, nil)
			ri = dyn.Resource(m.Resource).Namespace(objNS)
		}
		opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
		if gvk.Kind == "ServiceAccount" {
			opts.DryRun = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = ri.Create(ctx, o, opts)
		cancel()
		if apierrors.IsAlreadyExists(err) && opts.DryRun == nil {
			err = nil // a second rendering in the same namespace
		}
		if err != nil {
			t.Errorf("%s rejected: %v", what, err)
			continue
		}
		created++
	}
	// Warnings (deprecated APIs, ...) are what a user would see on apply;
	// they are listed, and none may be about fields or versions the server
	// does not know.
	for _, w := range warnings.all() {
		t.Logf("warning from the API server: %s", w)
		if strings.Contains(w, "unknown field") || strings.Contains(w, "no longer served") {
			t.Errorf("warning the chart must not cause: %s", w)
		}
	}
	var kinds []string
	for k := range skipped {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return created, kinds
}

// checkStrictCatchesNewerFields is the dry run's own negative control,
// kept: a Service with spec.trafficDistribution (Kubernetes 1.30+) must be
// rejected by v1.29 as an unknown field. Without FieldValidation Strict it
// is accepted with a warning and the field dropped, and the chart check
// would pass a chart that silently loses a setting on old clusters.
func checkStrictCatchesNewerFields(t *testing.T, c *cluster.Cluster) {
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "newer-field", "namespace": releaseNamespace},
		"spec": map[string]any{
			"ports":               []any{map[string]any{"port": int64(53), "protocol": "UDP"}},
			"trafficDistribution": "PreferClose",
		},
	}}
	corpus.EnsureNamespace(t, c.Client(), releaseNamespace, nil)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	_, err = dyn.Resource(servicesGVR).Namespace(releaseNamespace).Create(context.Background(), svc,
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	if err == nil || !strings.Contains(err.Error(), "trafficDistribution") {
		t.Fatalf("v1.29 accepted a field it does not know under strict validation (err %v): the chart check would miss newer fields", err)
	}
	t.Logf("rejected as expected: %v", err)
}

// warningLog keeps the API server's warnings (client-go's WarningHandler).
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningLog) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

var (
	_           rest.WarningHandler = (*warningLog)(nil)
	servicesGVR                     = schema.GroupVersionResource{Version: "v1", Resource: "services"}
)
