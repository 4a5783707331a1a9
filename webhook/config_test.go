package webhook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dnsguard/dnsguard/cmd/config"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "c.yaml", `
listen: 127.0.0.1:9443
nameservers: [10.0.0.10, 10.0.0.11]
clusterDomain: corp.internal
defaultMode: sidecar
dnsOptions:
  - {name: ndots, value: "3"}
  - {name: single-request-reopen}
sidecar:
  image: example/resolver:2
  fallback: false
  resources:
    requests: {cpu: 20m}
recheckInterval: 45s
`)
	cfg := DefaultConfig()
	if err := config.ReadFile(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9443" || len(cfg.Nameservers) != 2 || cfg.ClusterDomain != "corp.internal" ||
		cfg.DefaultMode != ModeSidecar || len(cfg.DNSOptions) != 2 || *cfg.DNSOptions[0].Value != "3" ||
		cfg.Sidecar.Image != "example/resolver:2" || cfg.Sidecar.Fallback || cfg.RecheckInterval.Seconds() != 45 {
		t.Fatalf("loaded %+v", cfg)
	}
	// Keys absent from the file keep their defaults.
	if cfg.Sidecar.RunAsUser != 65532 || cfg.MaxRequestBytes != DefaultMaxRequestBytes || cfg.DNSService != DefaultDNSService {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if cfg.Sidecar.Resources.Requests.Cpu().String() != "20m" {
		t.Errorf("resources %v", cfg.Sidecar.Resources)
	}
}

func TestReadConfigFileStrict(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown top key": "nameserver: [10.0.0.10]\n",
		"unknown nested":  "sidecar:\n  imag: x\n",
		"bad duration":    "recheckInterval: soon\n",
		"not yaml":        "listen: [\n",
		// encoding/json alone would take the first for clusterDomain.
		"key in other case": "clusterdomain: corp.internal\n",
		"key repeated":      "listen: :1\nlisten: :2\n",
	} {
		cfg := DefaultConfig()
		if err := config.ReadFile(writeFile(t, dir, "c.yaml", content), &cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := DefaultConfig()
	if err := config.ReadFile(filepath.Join(dir, "missing.yaml"), &cfg); err == nil {
		t.Error("missing file accepted")
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	crt := writeFile(t, dir, "tls.crt", "x")
	key := writeFile(t, dir, "tls.key", "x")
	good := func() Config {
		c := DefaultConfig()
		c.TLSCertFile, c.TLSKeyFile = crt, key
		c.Nameservers = []string{"10.96.0.10"}
		return c
	}
	if err := func() error { c := good(); return c.Validate(true) }(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad nameserver", func(c *Config) { c.Nameservers = []string{"10.96.0.300"} }, "--nameservers=10.96.0.300 [nameservers]"},
		{"four nameservers", func(c *Config) { c.Nameservers = []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"} }, "at most 3"},
		{"bad mode", func(c *Config) { c.DefaultMode = "fast" }, "--default-mode=fast [defaultMode]"},
		{"missing cert", func(c *Config) { c.TLSCertFile = filepath.Join(dir, "nope.crt") }, "nope.crt"},
		{"no cert flag", func(c *Config) { c.TLSKeyFile = "" }, "--tls-key-file=\"\" [tlsKeyFile]"},
		{"bad domain", func(c *Config) { c.ClusterDomain = "Cluster_Local" }, "--cluster-domain=Cluster_Local [clusterDomain]"},
		{"bad listen", func(c *Config) { c.Listen = "8443" }, "--listen=8443 [listen]"},
		{"bad dns service", func(c *Config) { c.Nameservers = nil; c.DNSService = "kube-dns" }, "--dns-service=kube-dns [dnsService]"},
		{"duplicate option", func(c *Config) { c.DNSOptions = append(c.DNSOptions, DNSOption{Name: "ndots"}) }, "--dns-options=ndots [dnsOptions]: appears twice"},
		{"empty image", func(c *Config) { c.Sidecar.Image = " " }, `--sidecar-image=" " [sidecar.image]`},
		{"negative sidecar UID", func(c *Config) { c.Sidecar.RunAsUser = -1 }, "sidecar.runAsUser=-1"},
		{"bad pull secret", func(c *Config) { c.Sidecar.ImagePullSecrets = []string{"Reg_Cred"} }, `imagePullSecrets "Reg_Cred"`},
		{"duplicate pull secret", func(c *Config) { c.Sidecar.ImagePullSecrets = []string{"a", "a"} }, `"a" appears twice`},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "--log-level=loud [logLevel]"},
		{"bad extra search domain", func(c *Config) { c.ExtraSearchDomains = []string{"ec2.internal", "bad_domain.example"} }, "--extra-search-domains=bad_domain.example [extraSearchDomains]"},
		{"too many extra search domains", func(c *Config) {
			for i := range 30 {
				c.ExtraSearchDomains = append(c.ExtraSearchDomains, fmt.Sprintf("d%d.example", i))
			}
		}, "more than a pod may have (32)"},
		{"sidecar cpu request above limit", func(c *Config) { c.Sidecar.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2") }, "cpu request 2 is above its limit 500m"},
		{"node-local existing loopback", func(c *Config) { c.NodeLocal = NodeLocalConfig{Existing: true, Address: "127.0.0.1"} }, `nodeLocal address "127.0.0.1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			err := c.Validate(true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
	// A trailing dot on the domain is accepted; Validate leaves it (it
	// changes nothing) and Normalize removes it. Negative control: with
	// Validate on a pointer that it normalizes, as it once was, this and
	// the nodeLocal case below fail.
	c := good()
	c.ClusterDomain = "cluster.local."
	if err := c.Validate(true); err != nil || c.ClusterDomain != "cluster.local." {
		t.Fatalf("%v %q", err, c.ClusterDomain)
	}
	c.Normalize()
	if c.ClusterDomain != "cluster.local" {
		t.Fatalf("normalized %q", c.ClusterDomain)
	}
	// 29 node search domains (with the 3 cluster ones: 32) are fine, with a
	// trailing dot or upper case as resolv.conf may have them.
	c = good()
	for i := range 29 {
		c.ExtraSearchDomains = append(c.ExtraSearchDomains, fmt.Sprintf("D%d.example.", i))
	}
	if err := c.Validate(true); err != nil {
		t.Fatal(err)
	}
	// nodeLocal.existing alone turns the node cache on at the default address.
	c = good()
	c.NodeLocal = NodeLocalConfig{Existing: true}
	if err := c.Validate(true); err != nil || c.NodeLocal != (NodeLocalConfig{Existing: true}) {
		t.Fatalf("Validate changed the configuration or refused it: %v %+v", err, c.NodeLocal)
	}
	c.Normalize()
	if !c.NodeLocal.Enabled || c.NodeLocal.Address != DefaultNodeLocalAddress {
		t.Fatalf("normalized %+v", c.NodeLocal)
	}
}

func TestValidateSidecarMetricsPort(t *testing.T) {
	for _, tc := range []struct {
		port int32
		want string // "" for valid
	}{
		{0, ""},
		{1, ""},
		{9153, ""},
		{8054, ""},
		{65535, ""},
		{-1, "metricsPort -1"},
		{65536, "metricsPort 65536"},
		{53, "metricsPort 53"},
		{8053, "metricsPort 8053"},
	} {
		cfg := DefaultConfig()
		cfg.Nameservers = []string{"10.96.0.10"}
		cfg.TLSCertFile, cfg.TLSKeyFile = "a", "b"
		cfg.Sidecar.MetricsPort = tc.port
		err := cfg.Validate(false)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("metricsPort %d: error %v, want %q", tc.port, err, tc.want)
		}
	}
	// The config file key.
	dir := t.TempDir()
	cfg := DefaultConfig()
	if err := config.ReadFile(writeFile(t, dir, "c.yaml", "sidecar: {metricsPort: 9153}\n"), &cfg); err != nil || cfg.Sidecar.MetricsPort != 9153 {
		t.Fatalf("sidecar.metricsPort from file: %d %v", cfg.Sidecar.MetricsPort, err)
	}
}
