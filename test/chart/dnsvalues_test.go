//go:build chart

package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/webhook"
	corev1 "k8s.io/api/core/v1"
)

// renderedWebhookConfig renders the chart with args and loads the webhook's config
// file from the ConfigMap, as the webhook does.
func renderedWebhookConfig(t *testing.T, args ...string) webhook.Config {
	t.Helper()
	r := render(t, args...)
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(one[*corev1.ConfigMap](t, r).Data["config.yaml"]), 0o644); err != nil {
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

func TestExtraSearchDomainsReachTheWebhook(t *testing.T) {
	if cfg := renderedWebhookConfig(t); len(cfg.ExtraSearchDomains) != 0 {
		t.Errorf("default extraSearchDomains %v, want none", cfg.ExtraSearchDomains)
	}
	cfg := renderedWebhookConfig(t, "--set", "extraSearchDomains={ec2.internal,corp.example.com}")
	if !slices.Equal(cfg.ExtraSearchDomains, []string{"ec2.internal", "corp.example.com"}) {
		t.Errorf("extraSearchDomains %v", cfg.ExtraSearchDomains)
	}
	if _, stderr, err := helmTemplate(t, "--set", "extraSearchDomains={bad_domain}"); err == nil {
		t.Fatalf("schema accepted an invalid search domain\n%s", stderr)
	}
}

func TestNodeLocalDNSCacheReachesTheWebhook(t *testing.T) {
	if cfg := renderedWebhookConfig(t); cfg.NodeLocal.Enabled || cfg.NodeLocal.Existing {
		t.Errorf("node-local on by default: %+v", cfg.NodeLocal)
	}
	cfg := renderedWebhookConfig(t, "--set", "nodeLocalDNSCache.enabled=true")
	if !cfg.NodeLocal.Enabled || !cfg.NodeLocal.Existing || cfg.NodeLocal.Address != "169.254.20.10" {
		t.Errorf("nodeLocal %+v, want existing at 169.254.20.10", cfg.NodeLocal)
	}
	// Nothing is deployed for an existing node cache.
	if strings.Contains(render(t, "--set", "nodeLocalDNSCache.enabled=true").raw, "kind: DaemonSet") {
		t.Error("nodeLocalDNSCache.enabled renders a DaemonSet")
	}
	_, stderr, err := helmTemplate(t, "--set", "nodeLocalDNSCache.enabled=true", "--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=10.0.0.10")
	if err == nil || !strings.Contains(stderr, "exclude each other") {
		t.Fatalf("nodeCache + nodeLocalDNSCache: want a failure, got %v\n%s", err, stderr)
	}
}

// The sidecar gets requests and limits for cpu and memory by default.
func TestSidecarResourcesHaveLimits(t *testing.T) {
	r := renderedWebhookConfig(t).Sidecar.Resources
	for _, l := range []corev1.ResourceList{r.Requests, r.Limits} {
		if l.Cpu().IsZero() || l.Memory().IsZero() {
			t.Errorf("sidecar resources %v: want cpu and memory requests and limits", r)
		}
	}
}
