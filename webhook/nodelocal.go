package webhook

import (
	"fmt"
	"net"
	"strings"
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
	// Address is the node cache's IP, or one IPv4 and one IPv6 address
	// comma separated (dual-stack and IPv6 clusters: the resolver's
	// --node-local-address takes the same list); empty means
	// DefaultNodeLocalAddress. Pods get the one of the cluster DNS's
	// primary family (localFor).
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

	// byFamily is Address parsed once by normalize, so an admission looks
	// its node cache address up instead of re-parsing the setting:
	// [0] the IPv4 address, [1] the IPv6 one ("" when none).
	byFamily [2]string
}

// family indexes byFamily: 0 for IPv4, 1 for IPv6.
func family(ip net.IP) int {
	if ip.To4() != nil {
		return 0
	}
	return 1
}

// normalize makes Existing imply Enabled, fills the default address and
// parses the address by family (byFamily).
func (n *NodeLocalConfig) normalize() {
	if n.Existing {
		n.Enabled = true
	}
	if n.Enabled && n.Address == "" {
		n.Address = DefaultNodeLocalAddress
	}
	n.byFamily = [2]string{}
	for _, a := range strings.Split(n.Address, ",") {
		a = strings.TrimSpace(a)
		if ip := net.ParseIP(a); ip != nil {
			n.byFamily[family(ip)] = a
		}
	}
}

// validate checks a normalized configuration's addresses.
func (n NodeLocalConfig) validate() error {
	if !n.Enabled {
		return nil
	}
	seen := map[bool]string{}
	for _, a := range strings.Split(n.Address, ",") {
		a = strings.TrimSpace(a)
		ip := net.ParseIP(a)
		if ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
			return fmt.Errorf("nodeLocal address %q: %q is not the node cache's IP; want one IP, or one IPv4 and one IPv6 address comma separated (not loopback or unspecified)", n.Address, a)
		}
		v4 := ip.To4() != nil
		if prev, dup := seen[v4]; dup {
			return fmt.Errorf("nodeLocal address %q: %s and %s are of one family; give at most one IPv4 and one IPv6 address", n.Address, prev, a)
		}
		seen[v4] = a
	}
	return nil
}

// localFor returns the node cache address pods should ask first: the one
// of the family of the first cluster DNS address that has one (the
// Service's clusterIPs list its primary family first). A second local
// address of the other family would add no resilience, the same process
// answers on both, and would take one of the pod's three nameservers from
// the cluster DNS fallback. "" when the node cache has no address of any
// family the cluster DNS has: an IPv6-only pod cannot reach an IPv4
// link-local address, and every lookup would first wait out a timeout.
func (n NodeLocalConfig) localFor(cluster []string) string {
	for _, c := range cluster {
		if ip := net.ParseIP(c); ip != nil && n.byFamily[family(ip)] != "" {
			return n.byFamily[family(ip)]
		}
	}
	return ""
}

// upstreams returns the servers pods (dnsconfig) or sidecars (sidecar
// mode) should ask: the node cache first when enabled and reachable in the
// cluster DNS's families, then the cluster DNS. The cluster DNS stays so a
// node whose cache is down still resolves. skipped says why the node cache
// was left out ("" when it was not).
func (n NodeLocalConfig) upstreams(cluster []string) (servers []string, skipped string) {
	if !n.Enabled {
		return cluster, ""
	}
	local := n.localFor(cluster)
	if local == "" {
		return cluster, fmt.Sprintf("the node cache (%s) has no address of the cluster DNS's family (%s), so pods could not reach it; give nodeLocal.address an IPv4 and an IPv6 address (chart: nodeCache.ipv6Address)", n.Address, strings.Join(cluster, ", "))
	}
	out := []string{local}
	for _, c := range cluster {
		if c != local {
			out = append(out, c)
		}
	}
	return out, ""
}

// clusterFirstServers are the nameservers the kubelet gives a ClusterFirst
// pod: its --cluster-dns, which is the node cache when one already exists,
// else (as far as the webhook knows) the cluster DNS Service.
func (n NodeLocalConfig) clusterFirstServers(cluster []string) []string {
	if n.Enabled && n.Existing {
		if local := n.localFor(cluster); local != "" {
			return []string{local}
		}
		return []string{strings.TrimSpace(strings.Split(n.Address, ",")[0])}
	}
	return cluster
}
