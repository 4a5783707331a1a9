package cluster

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestProxyModeValid(t *testing.T) {
	for _, m := range []ProxyMode{ProxyIPTables, ProxyNFTables} {
		if err := m.Valid(); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []ProxyMode{"", "ipvs", "nft", "IPTABLES"} {
		err := m.Valid()
		if err == nil || !strings.Contains(err.Error(), `"`+string(m)+`"`) {
			t.Errorf("mode %q: error %v, want one naming it", m, err)
		}
	}
	if ProxyIPTables.Other() != ProxyNFTables || ProxyNFTables.Other() != ProxyIPTables {
		t.Error("Other does not swap the modes")
	}
}

// A bad mode fails the configuration before anything starts.
func TestConfigRejectsProxyMode(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
		"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "registry"} {
		if err := os.WriteFile(bin+"/"+b, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := Config{Bin: bin, ProxyMode: "ipvs"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), `"ipvs"`) {
		t.Fatalf("ProxyMode ipvs: %v, want an error naming it", err)
	}
	c = Config{Bin: bin}
	if err := c.validate(); err != nil || c.ProxyMode != ProxyIPTables {
		t.Fatalf("empty ProxyMode: %v, mode %q; want iptables", err, c.ProxyMode)
	}
}

func TestKubeProxyConfigMode(t *testing.T) {
	c := &Cluster{cfg: Config{RunDir: "/run/x"}}
	n := newNodes(&c.cfg)[0]
	for _, m := range []ProxyMode{ProxyIPTables, ProxyNFTables} {
		if got := c.kubeProxyConfig(n, m); !strings.Contains(got, "\nmode: "+string(m)+"\n") {
			t.Errorf("%s: config lacks the mode:\n%s", m, got)
		}
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type dnatCase struct {
	ip, proto string
	port      int
	want      []string // nil: not dispatched
}

func checkDNAT(t *testing.T, parse func(string, string, string, int) ServiceDNAT, listing string, cases []dnatCase) {
	t.Helper()
	for _, tc := range cases {
		d := parse(listing, tc.ip, tc.proto, tc.port)
		slices.Sort(d.Endpoints)
		if d.Dispatched != (tc.want != nil) || !slices.Equal(d.Endpoints, tc.want) {
			t.Errorf("%s:%d/%s: %s, want %v", tc.ip, tc.port, tc.proto, d, tc.want)
		}
	}
}

var dnatCases = []dnatCase{
	{"10.96.0.10", "udp", 53, []string{"10.244.0.2:53", "10.244.0.3:53"}},
	{"10.96.0.10", "tcp", 53, []string{"10.244.0.2:53", "10.244.0.3:53"}},
	{"10.96.0.10", "tcp", 9153, []string{"10.244.0.2:9153", "10.244.0.3:9153"}},
	{"10.96.0.1", "tcp", 443, []string{"10.200.0.2:6443"}},
	{"10.96.0.1", "udp", 443, nil},
	{"10.96.0.11", "udp", 53, nil},
	{"10.96.0.10", "udp", 5353, nil},
}

func TestParseIPTablesDNAT(t *testing.T) {
	checkDNAT(t, ParseIPTablesDNAT, readTestdata(t, "iptables-save.txt"), dnatCases)
	// Rules of the other mode are not mistaken for these.
	checkDNAT(t, ParseIPTablesDNAT, readTestdata(t, "nft-kube-proxy.txt"), []dnatCase{{"10.96.0.10", "udp", 53, nil}})
}

func TestParseNFTablesDNAT(t *testing.T) {
	checkDNAT(t, ParseNFTablesDNAT, readTestdata(t, "nft-kube-proxy.txt"), dnatCases)
	checkDNAT(t, ParseNFTablesDNAT, readTestdata(t, "iptables-save.txt"), []dnatCase{{"10.96.0.10", "udp", 53, nil}})
}

func TestKubeProxyTables(t *testing.T) {
	got := kubeProxyTables("table ip nat\ntable ip kube-proxy\ntable inet dnsguard_nodelocal\ntable ip6 kube-proxy\ntable ip kube-proxy-not\n")
	if !slices.Equal(got, []string{"table ip kube-proxy", "table ip6 kube-proxy"}) {
		t.Errorf("got %v", got)
	}
}
