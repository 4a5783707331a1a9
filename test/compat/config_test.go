//go:build apiserver

package compat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// TestConfigRejectsBadValues: test/cluster's APIServer and FeatureGates
// fail fast, naming the bad value, before the machine lock is taken or
// etcd started, against the real binaries (the feature gate check asks
// kube-apiserver-1.29 --help for the gates it knows). Without the check
// a misspelt gate costs an etcd start and an API server that exits.
func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  cluster.Config
		want string
	}{
		{"missing binary", cluster.Config{APIServer: "kube-apiserver-1.28"}, "kube-apiserver-1.28 missing"},
		{"path, not a name", cluster.Config{APIServer: "../bin/kube-apiserver"}, `APIServer "../bin/kube-apiserver"`},
		{"gate syntax", cluster.Config{APIServer: "kube-apiserver-1.29", FeatureGates: map[string]bool{"sidecar-containers": false}}, `"sidecar-containers": not a gate name`},
		{"unknown gate", cluster.Config{APIServer: "kube-apiserver-1.29", FeatureGates: map[string]bool{"SidecarContainer": false}}, `"SidecarContainer": kube-apiserver-1.29 does not know it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Bin, tc.cfg.ControlPlaneOnly = binDir, true
			start := time.Now()
			c, err := cluster.Up(context.Background(), tc.cfg)
			if err == nil {
				_ = c.Down()
				t.Fatalf("Up accepted %+v", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name the bad value (want %q)", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to refuse; want a fast failure", d)
			}
		})
	}
}
