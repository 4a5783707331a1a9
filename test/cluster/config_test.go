package cluster

import (
	"strings"
	"testing"
)

func TestFeatureGatesFlag(t *testing.T) {
	c := Config{FeatureGates: map[string]bool{"SidecarContainers": false, "AnonymousAuthConfigurableEndpoints": true}}
	if got, want := c.featureGatesFlag(), "--feature-gates=AnonymousAuthConfigurableEndpoints=true,SidecarContainers=false"; got != want {
		t.Fatalf("got %q, want %q (name order, so runs compare)", got, want)
	}
	if got := (&Config{}).featureGatesFlag(); got != "" {
		t.Fatalf("no gates gave %q, want no flag", got)
	}
}

// The checks that need no binary; test/compat's TestConfigRejectsBadValues
// runs the rest against the real kube-apiserver binaries.
func TestValidateRejectsBadNames(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Bin: "/nonexistent", APIServer: "/usr/bin/kube-apiserver"}, `APIServer "/usr/bin/kube-apiserver"`},
		{Config{Bin: "/nonexistent", APIServer: ".."}, `APIServer ".."`},
		{Config{Bin: "/nonexistent", FeatureGates: map[string]bool{"Sidecar Containers": true}}, `"Sidecar Containers": not a gate name`},
	} {
		err := tc.cfg.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
}

// The IPv4-only cluster keeps exactly its former settings; dual-stack adds
// the IPv6 twin after the IPv4 one (the primary family comes first), on
// each node.
func TestIPFamilies(t *testing.T) {
	v4, dual := Config{Nodes: 2}, Config{Nodes: 2, DualStack: true}
	nodes := newNodes(&dual)
	first, second := nodes[0], nodes[1]
	for _, tc := range []struct{ name, v4, dual, wantV4, wantDual string }{
		{"service CIDRs", v4.serviceCIDRs(), dual.serviceCIDRs(), "10.96.0.0/16", "10.96.0.0/16,fd00:10:96::/112"},
		{"cluster CIDRs", v4.clusterCIDRs(), dual.clusterCIDRs(), "10.244.0.0/16", "10.244.0.0/16,fd00:10:244::/56"},
		{"node IPs", v4.nodeIPs(first), dual.nodeIPs(first), "10.200.0.2", "10.200.0.2,fd00:200::2"},
		{"second node's IPs", v4.nodeIPs(second), dual.nodeIPs(second), "10.200.2.2", "10.200.2.2,fd00:200:2::2"},
		{"upstream", v4.upstreamAddrs(), dual.upstreamAddrs(), "10.200.0.1", "10.200.0.1,fd00:200::1"},
		{"CNI ranges", v4.cniRanges(first), dual.cniRanges(first), `[[{"subnet": "10.244.0.0/24"}]]`, `[[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]]`},
		{"second node's CNI ranges", v4.cniRanges(second), dual.cniRanges(second), `[[{"subnet": "10.244.1.0/24"}]]`, `[[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]`},
		{"CNI routes", v4.cniRoutes(), dual.cniRoutes(), `[{"dst": "0.0.0.0/0"}]`, `[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]`},
	} {
		if tc.v4 != tc.wantV4 || tc.dual != tc.wantDual {
			t.Errorf("%s: IPv4 %q dual %q, want %q and %q", tc.name, tc.v4, tc.dual, tc.wantV4, tc.wantDual)
		}
	}
}
