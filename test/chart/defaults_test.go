//go:build chart

package chart

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Checks of the defaults users expect from a cluster add-on's chart:
// Linux node selectors, the recommended labels, spread constraints that
// follow rollouts, a PDB that lets drains evict unhealthy pods, selectors
// an upgrade can keep, and the node cache's namespace.

// everythingArgs render every workload of the chart: webhook, certificate
// controller, cleanup Job, test pod, node cache, and the monitoring objects.
var everythingArgs = append([]string{"-f", chartRel + "/ci/nodecache-values.yaml"}, monitoringArgs...)

// allPodSpecs adds the DaemonSets to podSpecs.
func allPodSpecs(r *rendered) map[string]corev1.PodSpec {
	specs := podSpecs(r)
	for _, d := range all[*appsv1.DaemonSet](r) {
		specs["daemonset/"+d.Name] = d.Spec.Template.Spec
	}
	return specs
}

// TestLinuxNodeSelector: every pod of the chart runs on Linux nodes by
// default, and the selector can be changed or dropped.
// Negative control: removing the nodeSelector block of
// tests/pod-test-dnsconfig.yaml fails "defaults" for pod/dnsguard-test-dns.
func TestLinuxNodeSelector(t *testing.T) {
	const osKey = "kubernetes.io/os"
	for _, tc := range []struct {
		name string
		args []string
		want func(where string) map[string]string
	}{
		{"defaults", everythingArgs, func(string) map[string]string { return map[string]string{osKey: "linux"} }},
		{"a key added", append(slices.Clone(everythingArgs), "--set", "nodeSelector.pool=system", "--set", "nodeCache.nodeSelector.dns=yes"),
			func(where string) map[string]string {
				if strings.HasPrefix(where, "daemonset/") {
					return map[string]string{osKey: "linux", "dns": "yes"}
				}
				return map[string]string{osKey: "linux", "pool": "system"}
			}},
		{"dropped", append(slices.Clone(everythingArgs), "--set", `nodeSelector.kubernetes\.io/os=null`, "--set", `nodeCache.nodeSelector.kubernetes\.io/os=null`),
			func(string) map[string]string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs := allPodSpecs(render(t, tc.args...))
			kinds := map[string]bool{}
			for where, ps := range specs {
				kinds[strings.Split(where, "/")[0]] = true
				if want := tc.want(where); !maps.Equal(ps.NodeSelector, want) {
					t.Errorf("%s: nodeSelector %v, want %v", where, ps.NodeSelector, want)
				}
			}
			if want := []string{"daemonset", "deployment", "job", "pod"}; !slices.Equal(slices.Sorted(maps.Keys(kinds)), want) {
				t.Errorf("checked %v, want every kind of workload %v", slices.Sorted(maps.Keys(kinds)), want)
			}
		})
	}
}

var recommended = []string{
	"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
	"app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "app.kubernetes.io/component",
}

// TestRecommendedLabels: every object and every pod template carries the
// recommended app.kubernetes.io labels, component included, and the
// component agrees with dnsguard.io/component where both are set.
// Negative control: deleting the app.kubernetes.io/component line of
// certs/rbac-certs.yaml's Role fails with that Role named.
func TestRecommendedLabels(t *testing.T) {
	for _, args := range [][]string{everythingArgs, {"-f", chartRel + "/ci/certmanager-values.yaml"}, {"-f", chartRel + "/ci/url-values.yaml"}} {
		r := render(t, args...)
		check := func(where string, l map[string]string) {
			for _, k := range recommended {
				if l[k] == "" {
					t.Errorf("%v: %s has no label %s (labels %v)", args, where, k, l)
				}
			}
			if c, ok := l["dnsguard.io/component"]; ok && c != l["app.kubernetes.io/component"] {
				t.Errorf("%v: %s: app.kubernetes.io/component %q, dnsguard.io/component %q", args, where, l["app.kubernetes.io/component"], c)
			}
		}
		for _, o := range r.objs {
			m, err := meta.Accessor(o)
			if err != nil {
				t.Fatal(err)
			}
			check(o.GetObjectKind().GroupVersionKind().Kind+"/"+m.GetName(), m.GetLabels())
		}
		for _, d := range all[*appsv1.Deployment](r) {
			check("pod template of Deployment/"+d.Name, d.Spec.Template.Labels)
		}
		for _, d := range all[*appsv1.DaemonSet](r) {
			check("pod template of DaemonSet/"+d.Name, d.Spec.Template.Labels)
		}
	}
}

// latestRelease is the commit the newest release of CHANGELOG.md was cut
// from.
func latestRelease(t *testing.T) (version, commit string) {
	t.Helper()
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## \[(\d+\.\d+\.\d+)\][^\n]*\n+Cut from commit ([0-9a-f]{40})`).FindSubmatch(b)
	if m == nil {
		t.Fatal("CHANGELOG.md names no release with its commit")
	}
	return string(m[1]), string(m[2])
}

// TestSelectorsKeptFromLastRelease renders the chart of the last release
// (from its commit, as CHANGELOG.md names it) and this one: selectors of
// Deployments and DaemonSets are immutable, so `helm upgrade` fails on any
// change; each must be the same, label for label.
// Negative control: adding app.kubernetes.io/component to
// dnsguard.selectorLabels fails with the webhook Deployment's selector.
func TestSelectorsKeptFromLastRelease(t *testing.T) {
	version, commit := latestRelease(t)
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C ../.. archive "$0" charts/dnsguard | tar -x -C "$1"`, commit, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("release %s: git archive %s (a clone without that commit cannot run this check): %v\n%s", version, commit, err, out)
	}
	selectors := func(chart string, args ...string) map[string]string {
		cmd := exec.Command(helmBin(t), append([]string{"template", release, chart, "--namespace", namespace}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm template %s: %v", chart, err)
		}
		r := decode(t, string(out))
		sel := map[string]string{}
		for _, d := range all[*appsv1.Deployment](r) {
			sel["Deployment/"+d.Name] = metav1.FormatLabelSelector(d.Spec.Selector)
		}
		for _, d := range all[*appsv1.DaemonSet](r) {
			sel["DaemonSet/"+d.Name] = metav1.FormatLabelSelector(d.Spec.Selector)
		}
		return sel
	}
	// Values both versions know: the node cache on, everything else default.
	args := []string{"--set", "nameservers={10.96.0.10}", "--set", "nodeCache.enabled=true"}
	old, cur := selectors(filepath.Join(dir, "charts/dnsguard"), args...), selectors(chartRel, args...)
	if len(old) < 3 {
		t.Fatalf("release %s renders %d workloads: %v", version, len(old), old)
	}
	for name, s := range old {
		if cur[name] != s {
			t.Errorf("%s: selector %q, release %s had %q: helm upgrade would fail", name, cur[name], version, s)
		}
	}
}

// TestSpreadFollowsRollouts: every spread constraint of the webhook counts
// only the pods of its own ReplicaSet (matchLabelKeys pod-template-hash),
// unless the user set matchLabelKeys.
// Negative control: defaulting matchLabelKeys to an empty list in
// deployment.yaml fails "matchLabelKeys [], want [pod-template-hash]".
func TestSpreadFollowsRollouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"defaults", nil, []string{"pod-template-hash"}},
		{"user's keys kept", []string{"--set-json", `topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule","matchLabelKeys":["pod-template-hash","track"]}]`},
			[]string{"pod-template-hash", "track"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep := webhookDeployment(t, render(t, tc.args...))
			tsc := dep.Spec.Template.Spec.TopologySpreadConstraints
			if len(tsc) == 0 {
				t.Fatal("no topologySpreadConstraints")
			}
			for _, c := range tsc {
				if !slices.Equal(c.MatchLabelKeys, tc.want) {
					t.Errorf("%s: matchLabelKeys %v, want %v", c.TopologyKey, c.MatchLabelKeys, tc.want)
				}
				if c.LabelSelector == nil || !selector(t, c.LabelSelector).Matches(labels.Set(dep.Spec.Template.Labels)) {
					t.Errorf("%s: labelSelector %v does not select the webhook pods", c.TopologyKey, c.LabelSelector)
				}
			}
		})
	}
}

// TestPDBEvictsUnhealthyPods: the webhook's PDB lets a drain evict pods
// that are not Ready (AlwaysAllow) unless told otherwise; other values fail.
// Negative control: deleting the unhealthyPodEvictionPolicy line of
// poddisruptionbudget.yaml fails both rows ("unset").
func TestPDBEvictsUnhealthyPods(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want policyv1.UnhealthyPodEvictionPolicyType
	}{
		{nil, policyv1.AlwaysAllow},
		{[]string{"--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget"}, policyv1.IfHealthyBudget},
	} {
		pdb := one[*policyv1.PodDisruptionBudget](t, render(t, tc.args...))
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != tc.want {
			t.Errorf("%v: unhealthyPodEvictionPolicy %v, want %s", tc.args, deref(p), tc.want)
		}
	}
	if _, _, err := helmTemplate(t, "--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Sometimes"); err == nil {
		t.Error("unhealthyPodEvictionPolicy=Sometimes accepted")
	}
}

// TestNodeCacheNamespace: nodeCache.namespace moves the node cache's
// DaemonSet and ServiceAccount (and where its PodMonitor looks) to that
// namespace and nothing else; by default they stay in the release
// namespace.
// Negative control: leaving the DaemonSet's namespace at
// .Release.Namespace fails "DaemonSet ... in dnsguard-system".
func TestNodeCacheNamespace(t *testing.T) {
	const other = "dnsguard-node-cache"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"release namespace", []string{"-f", chartRel + "/ci/resolver-metrics-values.yaml"}, namespace},
		{"own namespace", []string{"-f", chartRel + "/ci/nodecache-namespace-values.yaml"}, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			ds := one[*appsv1.DaemonSet](t, r)
			if ds.Namespace != tc.want {
				t.Errorf("DaemonSet %s in %s, want %s", ds.Name, ds.Namespace, tc.want)
			}
			var sa *corev1.ServiceAccount
			for _, s := range all[*corev1.ServiceAccount](r) {
				if s.Name == ds.Spec.Template.Spec.ServiceAccountName {
					sa = s
				}
				if s.Namespace == other && s.Name != ds.Spec.Template.Spec.ServiceAccountName {
					t.Errorf("ServiceAccount %s moved to %s too", s.Name, other)
				}
			}
			if sa == nil || sa.Namespace != ds.Namespace {
				t.Errorf("the DaemonSet's ServiceAccount %s is not in its namespace %s (%v)", ds.Spec.Template.Spec.ServiceAccountName, ds.Namespace, sa)
			}
			for _, o := range r.objs {
				m, _ := meta.Accessor(o)
				if m.GetNamespace() == other && o != ds && o != sa {
					t.Errorf("%s/%s moved to %s too", o.GetObjectKind().GroupVersionKind().Kind, m.GetName(), other)
				}
			}
			for _, pm := range crds(t, r, "PodMonitor") {
				if pm.GetName() != release+"-node-cache" {
					continue
				}
				names, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "namespaceSelector", "matchNames")
				if !slices.Equal(names, []string{tc.want}) {
					t.Errorf("node cache PodMonitor looks in %v, want [%s]", names, tc.want)
				}
			}
		})
	}
	if _, _, err := helmTemplate(t, "--set", "nodeCache.namespace=Not_A_Name"); err == nil {
		t.Error("nodeCache.namespace=Not_A_Name accepted")
	}
}
