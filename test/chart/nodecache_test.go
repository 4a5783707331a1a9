//go:build chart

package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/resolver"
	"github.com/dnsguard/dnsguard/webhook"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestNodeCacheOffByDefault(t *testing.T) {
	r := render(t)
	if ds := all[*appsv1.DaemonSet](r); len(ds) != 0 {
		t.Fatalf("nodeCache defaults to off, got %d DaemonSets", len(ds))
	}
	if strings.Contains(one[*corev1.ConfigMap](t, r).Data["config.yaml"], "nodeLocal") {
		t.Error("webhook config mentions nodeLocal with nodeCache off")
	}
}

func TestNodeCacheDaemonSet(t *testing.T) {
	r := render(t, "-f", filepath.Join(chartRel, "ci", "nodecache-values.yaml"))
	ds := one[*appsv1.DaemonSet](t, r)
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSDefault {
		t.Errorf("hostNetwork %v dnsPolicy %s, want true and Default", ps.HostNetwork, ps.DNSPolicy)
	}
	if ps.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", ps.PriorityClassName)
	}
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxSurge == nil || *u.RollingUpdate.MaxSurge != intstr.FromInt32(1) ||
		u.RollingUpdate.MaxUnavailable == nil || *u.RollingUpdate.MaxUnavailable != intstr.FromInt32(0) {
		t.Errorf("updateStrategy %+v, want RollingUpdate maxSurge 1 maxUnavailable 0 (SO_REUSEPORT handover)", u)
	}
	if len(ps.Containers) != 1 || len(ps.InitContainers) != 0 {
		t.Fatalf("want one container, got %d (+%d init)", len(ps.Containers), len(ps.InitContainers))
	}
	c := ps.Containers[0]
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			t.Errorf("hostPort %d would keep the surge pod off the node", p.HostPort)
		}
	}
	// Only what node mode needs: NET_ADMIN (interface, NOTRACK) and
	// NET_BIND_SERVICE (port 53) on top of nothing.
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext/capabilities")
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(add, []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}) {
		t.Errorf("capabilities %+v, want drop [ALL] add [NET_ADMIN NET_BIND_SERVICE]", sc.Capabilities)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem not true")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile not RuntimeDefault")
	}
	if ps.HostPID || ps.HostIPC || len(ps.Volumes) != 0 {
		t.Errorf("hostPID %v hostIPC %v volumes %d: the cache needs none", ps.HostPID, ps.HostIPC, len(ps.Volumes))
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}
	// The args are the resolver's own flags: parse them with its parser.
	if c.Command[0] != "/resolver" {
		t.Errorf("command %v", c.Command)
	}
	cfg, err := parseResolverArgs(c.Args)
	if err != nil && !strings.Contains(err.Error(), "resolv-conf") {
		t.Fatalf("resolver rejects the DaemonSet args %v: %v", c.Args, err)
	}
	if !cfg.NodeLocal || cfg.NodeLocalAddress != "169.254.20.10" || !slices.Equal(cfg.ClusterUpstreams, []string{"10.96.0.10"}) || !cfg.NoTrack {
		t.Errorf("args %v: node mode %v address %s cluster %v notrack %v", c.Args, cfg.NodeLocal, cfg.NodeLocalAddress, cfg.ClusterUpstreams, cfg.NoTrack)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil || !slices.Equal(c.ReadinessProbe.Exec.Command, []string{"/resolver", "probe", "--readyz=" + cfg.HealthListen}) {
		t.Errorf("readinessProbe %+v, want exec probe --readyz=%s", c.ReadinessProbe, cfg.HealthListen)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.Exec == nil || !slices.Contains(c.LivenessProbe.Exec.Command, "--server=169.254.20.10:53") {
		t.Errorf("livenessProbe %+v", c.LivenessProbe)
	}
	// Its own ServiceAccount: no token, no RBAC.
	sa := ps.ServiceAccountName
	if sa == "" || sa == "default" || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("serviceAccountName %q automount %v", sa, deref(ps.AutomountServiceAccountToken))
	}
	found := false
	for _, s := range all[*corev1.ServiceAccount](r) {
		if s.Name == sa {
			found = true
			if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s mounts its token", sa)
			}
		}
	}
	if !found {
		t.Errorf("ServiceAccount %s not rendered", sa)
	}
	boundTo := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa })
	}
	for _, b := range all[*rbacv1.RoleBinding](r) {
		if boundTo(b.Subjects) {
			t.Errorf("RoleBinding %s binds %s", b.Name, sa)
		}
	}
	for _, b := range all[*rbacv1.ClusterRoleBinding](r) {
		if boundTo(b.Subjects) {
			t.Errorf("ClusterRoleBinding %s binds %s", b.Name, sa)
		}
	}
	// The webhook points pods at the cache.
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(one[*corev1.ConfigMap](t, r).Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	wc := webhook.DefaultConfig()
	if err := config.ReadFile(f, &wc); err != nil {
		t.Fatal(err)
	}
	if !wc.NodeLocal.Enabled || wc.NodeLocal.Address != "169.254.20.10" {
		t.Errorf("webhook nodeLocal %+v, want enabled at 169.254.20.10", wc.NodeLocal)
	}
}

func TestNodeCacheNeedsClusterDNS(t *testing.T) {
	_, stderr, err := helmTemplate(t, "--set", "nodeCache.enabled=true")
	if err == nil || !strings.Contains(stderr, "nodeCache.clusterDNS") {
		t.Fatalf("want a failure naming nodeCache.clusterDNS, got %v\n%s", err, stderr)
	}
	r := render(t, "--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=10.0.0.10", "--set", "nodeCache.address=169.254.25.10")
	args := one[*appsv1.DaemonSet](t, r).Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--cluster-upstream=10.0.0.10") || !slices.Contains(args, "--node-local-address=169.254.25.10") {
		t.Errorf("args %v", args)
	}
	if _, stderr, err := helmTemplate(t, "--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=10.0.0.10", "--set", "nodeCache.bogus=1"); err == nil {
		t.Fatalf("schema accepted an unknown nodeCache key\n%s", stderr)
	}
}

// parseResolverArgs parses args as cmd/resolver does: defaults, flags,
// upstreams from resolv.conf when none is given, then Validate.
func parseResolverArgs(args []string) (resolver.Config, error) {
	cfg, err := config.Load("resolver", args, os.Stderr, resolver.DefaultConfig, (*resolver.Config).RegisterFlags, nil)
	if err == nil {
		err = cfg.ResolveUpstreams(func(string) string { return "" })
	}
	if err == nil {
		err = cfg.Validate()
	}
	return cfg, err
}
