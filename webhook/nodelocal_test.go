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
	n.normalize()
	if err := n.validate(); err != nil {
		t.Fatal(err)
	}
	// Intercepting the Service IP itself: no duplicate nameserver.
	if got, skipped := n.upstreams([]string{"10.96.0.10", "10.96.0.11"}); !reflect.DeepEqual(got, []string{"10.96.0.10", "10.96.0.11"}) || skipped != "" {
		t.Fatalf("got %v (%s)", got, skipped)
	}
	for _, bad := range []string{"127.0.0.1", "0.0.0.0", "node-cache", "169.254.20.10,169.254.20.11", "fd00::10,fd00::11", "169.254.20.10,::1"} {
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

// Dual-stack and IPv6 clusters: pods get the node cache address of the
// cluster DNS's primary family (the first of the Service's clusterIPs),
// then the cluster DNS; a node cache without an address of any of the
// cluster DNS's families is left out with a warning, never written where
// the pod cannot reach it. Negative control (run once on 2026-12-07):
// with localFor returning the first configured address, the IPv6 rows
// fail (169.254.20.10 written into IPv6-only pods).
func TestNodeLocalAddressFamilies(t *testing.T) {
	const v4, v6 = "169.254.20.10", "fd00::10"
	tests := []struct {
		name, address string
		cluster       []string
		want          []string
		sidecarUps    []string
		warn          string
	}{
		{"IPv4 cluster, dual node cache", v4 + "," + v6, []string{"10.96.0.10"}, []string{v4, "10.96.0.10"}, []string{v4 + ":53", "10.96.0.10:53"}, ""},
		{"IPv6 cluster, dual node cache", v4 + "," + v6, []string{"fd00:10:96::a"}, []string{v6, "fd00:10:96::a"}, []string{"[fd00::10]:53", "[fd00:10:96::a]:53"}, ""},
		{"dual-stack IPv4 primary", v6 + "," + v4, []string{"10.96.0.10", "fd00:10:96::a"}, []string{v4, "10.96.0.10", "fd00:10:96::a"}, []string{v4 + ":53", "10.96.0.10:53", "[fd00:10:96::a]:53"}, ""},
		{"dual-stack IPv6 primary", v4 + "," + v6, []string{"fd00:10:96::a", "10.96.0.10"}, []string{v6, "fd00:10:96::a", "10.96.0.10"}, []string{"[fd00::10]:53", "[fd00:10:96::a]:53", "10.96.0.10:53"}, ""},
		{"dual-stack IPv6 primary, IPv4-only node cache", v4, []string{"fd00:10:96::a", "10.96.0.10"}, []string{v4, "fd00:10:96::a", "10.96.0.10"}, []string{v4 + ":53", "[fd00:10:96::a]:53", "10.96.0.10:53"}, ""},
		{"IPv6 cluster, IPv4-only node cache", v4, []string{"fd00:10:96::a"}, []string{"fd00:10:96::a"}, []string{"[fd00:10:96::a]:53"}, "no address of the cluster DNS's family"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.TLSCertFile, cfg.TLSKeyFile = "x", "y"
			cfg.NodeLocal = NodeLocalConfig{Enabled: true, Address: tc.address}
			cfg.Normalize()
			if err := cfg.Validate(false); err != nil {
				t.Fatal(err)
			}
			env := Env{Namespace: "shop", Nameservers: tc.cluster, NativeSidecarsUnavailable: ""}
			d := Decide(pod(), env, &cfg)
			if !reflect.DeepEqual(d.DNSConfig.Nameservers, tc.want) {
				t.Errorf("dnsconfig nameservers %v, want %v", d.DNSConfig.Nameservers, tc.want)
			}
			if got := strings.Join(d.Warnings, "\n"); tc.warn == "" && got != "" || !strings.Contains(got, tc.warn) {
				t.Errorf("warnings %q, want %q", got, tc.warn)
			}
			s := Decide(pod(annotate(AnnotationMode, ModeSidecar)), env, &cfg)
			var ups []string
			for _, a := range s.Sidecar.Args {
				if strings.HasPrefix(a, "--upstream=") {
					ups = append(ups, strings.TrimPrefix(a, "--upstream="))
				}
			}
			if !reflect.DeepEqual(ups, tc.sidecarUps) {
				t.Errorf("sidecar upstreams %v, want %v", ups, tc.sidecarUps)
			}
		})
	}
}
