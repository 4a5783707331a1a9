package webhook

import (
	"fmt"
	"net"
)

// DefaultNodeLocalAddress is the link-local address the node-local cache
// (bin/resolver --node-local, the chart's nodeCache DaemonSet) answers on,
// the same as NodeLocal DNSCache's.
const DefaultNodeLocalAddress = "169.254.20.10"

// NodeLocalConfig points pods at a per-node cache. When enabled, dnsconfig
// mode writes nameservers = Address, then the cluster DNS as fallback (a
// pod whose node cache is down waits one `timeout:2` and then asks the
// cluster DNS), and sidecar mode makes Address the sidecar's first
// upstream, the cluster DNS its second.
type NodeLocalConfig struct {
	// Enabled turns node-local nameservers on.
	Enabled bool `json:"enabled"`
	// Address is the node cache's IP; empty means DefaultNodeLocalAddress.
	Address string `json:"address,omitempty"`
	// Existing says the node cache is NodeLocal DNSCache (or another)
	// that the kubelets already give ClusterFirst pods as their only
	// nameserver (kubelet --cluster-dns=169.254.20.10, the IPVS setup,
	// where the cache cannot also answer on the kube-dns Service IP).
	// Without it the webhook writes the discovered kube-dns Service IP and
	// patched pods bypass the node cache. It implies Enabled; it also makes
	// /explain's "before" show the node cache as a ClusterFirst pod's
	// nameserver.
	Existing bool `json:"existing,omitempty"`
}

// normalize makes Existing imply Enabled and fills the default address.
func (n *NodeLocalConfig) normalize() {
	if n.Existing {
		n.Enabled = true
	}
	if n.Enabled && n.Address == "" {
		n.Address = DefaultNodeLocalAddress
	}
}

// validate checks a normalized configuration's address.
func (n NodeLocalConfig) validate() error {
	if !n.Enabled {
		return nil
	}
	if ip := net.ParseIP(n.Address); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		return fmt.Errorf("nodeLocal address %q: want the node cache's IP (not loopback or unspecified)", n.Address)
	}
	return nil
}

// upstreams returns the servers pods (dnsconfig) or sidecars (sidecar
// mode) should ask: the node cache first when enabled, then the cluster
// DNS. The cluster DNS stays so a node whose cache is down still resolves.
func (n NodeLocalConfig) upstreams(cluster []string) []string {
	if !n.Enabled {
		return cluster
	}
	out := []string{n.Address}
	for _, c := range cluster {
		if c != n.Address {
			out = append(out, c)
		}
	}
	return out
}

// clusterFirstServers are the nameservers the kubelet gives a ClusterFirst
// pod: its --cluster-dns, which is the node cache when one already exists,
// else (as far as the webhook knows) the cluster DNS Service.
func (n NodeLocalConfig) clusterFirstServers(cluster []string) []string {
	if n.Enabled && n.Existing {
		return []string{n.Address}
	}
	return cluster
}
