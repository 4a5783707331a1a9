//go:build chart

package chart

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// The webhook's --native-sidecars=auto asks for more than the version only
// where it must (webhook/nativesidecar.go): a dry-run probe pod before 1.33,
// the nodes' kubelet versions before 1.32. The chart grants exactly that,
// by the Kubernetes version it is rendered for, and nothing with on/off.
// Negative control (run once on 2026-12-07): with the template's "<1.33-0"
// changed to "<1.29-0", the v1.29.6 and v1.32.13 rows fail on the missing
// Role.
func TestNativeSidecarRBACFollowsKubeVersion(t *testing.T) {
	probeRole := "Role/" + namespace + "/" + release + "-native-sidecar-probe"
	nodesRole := "ClusterRole/" + release + "-kubelet-versions"
	tests := []struct {
		kube, setting   string
		probe, kubelets bool
	}{
		{"v1.29.6", "auto", true, true},
		{"v1.31.14", "auto", true, true},
		{"v1.32.13", "auto", true, false},
		{"v1.33.13", "auto", false, false},
		{"v1.37.2", "auto", false, false},
		{"v1.29.6", "on", false, false},
		{"v1.29.6", "off", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.kube+"/"+tc.setting, func(t *testing.T) {
			r := render(t, "--kube-version", tc.kube, "--set", "nativeSidecars="+tc.setting)
			roles := map[string][]rbacv1.PolicyRule{}
			for _, x := range all[*rbacv1.Role](r) {
				roles["Role/"+x.Namespace+"/"+x.Name] = x.Rules
			}
			for _, x := range all[*rbacv1.ClusterRole](r) {
				roles["ClusterRole/"+x.Name] = x.Rules
			}
			probe, hasProbe := roles[probeRole]
			if hasProbe != tc.probe {
				t.Errorf("probe Role rendered %v, want %v (have %v)", hasProbe, tc.probe, keys(roles))
			}
			if hasProbe && (len(probe) != 1 || !slices.Equal(probe[0].Resources, []string{"pods"}) || !slices.Equal(probe[0].Verbs, []string{"create"})) {
				t.Errorf("probe Role grants %+v, want create pods only", probe)
			}
			nodes, hasNodes := roles[nodesRole]
			if hasNodes != tc.kubelets {
				t.Errorf("kubelet-versions ClusterRole rendered %v, want %v", hasNodes, tc.kubelets)
			}
			if hasNodes && (len(nodes) != 1 || !slices.Equal(nodes[0].Resources, []string{"nodes"}) || !slices.Equal(nodes[0].Verbs, []string{"list"})) {
				t.Errorf("kubelet-versions ClusterRole grants %+v, want list nodes only", nodes)
			}
			bound := map[string]bool{}
			for _, b := range all[*rbacv1.RoleBinding](r) {
				if len(b.Subjects) == 1 && b.Subjects[0].Name == release && b.Subjects[0].Namespace == namespace {
					bound["Role/"+b.Namespace+"/"+b.RoleRef.Name] = true
				}
			}
			for _, b := range all[*rbacv1.ClusterRoleBinding](r) {
				if len(b.Subjects) == 1 && b.Subjects[0].Name == release && b.Subjects[0].Namespace == namespace {
					bound["ClusterRole/"+b.RoleRef.Name] = true
				}
			}
			if hasProbe && !bound[probeRole] || hasNodes && !bound[nodesRole] {
				t.Errorf("roles not bound to the webhook's ServiceAccount: %v", bound)
			}
		})
	}
}
