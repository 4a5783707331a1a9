package webhook

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dnsguard/dnsguard/cmd/config"
)

func nodeLocalConfig(t *testing.T) *Config {
	t.Helper()
	c := DefaultConfig()
	c.TLSCertFile, c.TLSKeyFile = "x", "y"
	c.NodeLocal = NodeLocalConfig{Enabled: true}
	c.Normalize()
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestNodeLocalDNSConfigPutsNodeCacheFirst(t *testing.T) {
	cfg := nodeLocalConfig(t)
	d := Decide(pod(), testEnv, cfg)
	if d.Mode != ModeDNSConfig {
		t.Fatalf("mode %s (%s)", d.Mode, d.Reason)
	}
	want := []string{"169.254.20.10", "10.96.0.10"}
	if !reflect.DeepEqual(d.DNSConfig.Nameservers, want) {
		t.Fatalf("nameservers %v, want %v (node cache first, cluster DNS fallback)", d.DNSConfig.Nameservers, want)
	}
	rc := RenderResolvConf(d.DNSConfig)
	if !strings.HasPrefix(rc, "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 169.254.20.10\nnameserver 10.96.0.10\noptions ndots:5 timeout:2 attempts:3 single-request-reopen\n") {
		t.Fatalf("resolv.conf:\n%s", rc)
	}
}

func TestNodeLocalSidecarUpstreams(t *testing.T) {
	cfg := nodeLocalConfig(t)
	d := Decide(pod(annotate(AnnotationMode, ModeSidecar)), testEnv, cfg)
	if d.Mode != ModeSidecar || d.Sidecar == nil {
		t.Fatalf("mode %s (%s)", d.Mode, d.Reason)
	}
	var ups []string
	for _, a := range d.Sidecar.Args {
		if strings.HasPrefix(a, "--upstream=") {
			ups = append(ups, strings.TrimPrefix(a, "--upstream="))
		}
	}
	if want := []string{"169.254.20.10:53", "10.96.0.10:53"}; !reflect.DeepEqual(ups, want) {
		t.Fatalf("sidecar upstreams %v, want %v", ups, want)
	}
	// The pod itself still asks the sidecar, then the cluster DNS.
	if want := []string{"127.0.0.1", "10.96.0.10"}; !reflect.DeepEqual(d.DNSConfig.Nameservers, want) {
		t.Fatalf("pod nameservers %v, want %v", d.DNSConfig.Nameservers, want)
	}
}

func TestNodeLocalOffLeavesNameserversAlone(t *testing.T) {
	c := DefaultConfig()
	d := Decide(pod(), testEnv, &c)
	if want := []string{"10.96.0.10"}; !reflect.DeepEqual(d.DNSConfig.Nameservers, want) {
		t.Fatalf("nameservers %v, want %v", d.DNSConfig.Nameservers, want)
	}
}

func TestNodeLocalCustomAddressAndDedup(t *testing.T) {
	n := NodeLocalConfig{Enabled: true, Address: "10.96.0.10"}
	if err := n.validate(); err != nil {
		t.Fatal(err)
	}
	// Intercepting the Service IP itself: no duplicate nameserver.
	if got := n.upstreams([]string{"10.96.0.10", "10.96.0.11"}); !reflect.DeepEqual(got, []string{"10.96.0.10", "10.96.0.11"}) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"127.0.0.1", "0.0.0.0", "node-cache"} {
		n := NodeLocalConfig{Enabled: true, Address: bad}
		if err := n.validate(); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("address %q: want an error naming it, got %v", bad, err)
		}
	}
}

func TestNodeLocalFromConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("nodeLocal:\n  enabled: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.TLSCertFile, c.TLSKeyFile = "x", "y"
	if err := config.ReadFile(p, &c); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	if c.NodeLocal.Address != DefaultNodeLocalAddress {
		t.Fatalf("address %q, want the default %s", c.NodeLocal.Address, DefaultNodeLocalAddress)
	}
	if err := os.WriteFile(p, []byte("nodeLocal:\n  enabled: true\n  adress: 1.2.3.4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.ReadFile(p, &c); err == nil {
		t.Fatal("a misspelt nodeLocal key must be an error")
	}
}
