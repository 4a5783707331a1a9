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
