package cluster

import (
	"fmt"
	"strings"
)

// IP families. A dual-stack cluster (Config.DualStack) is IPv4-primary, as
// kubeadm builds one from "v4,v6" ranges: every range and node address
// below gets an IPv6 twin, the kubernetes Service stays IPv4 (it takes the
// primary family), and kube-system/kube-dns stays SingleStack IPv4 as
// kubeadm creates it, so the existing scenarios see the cluster DNS they
// always saw. What uses IPv6 asks for it: a Service with ipFamilyPolicy
// PreferDualStack or RequireDualStack gets a second clusterIP from
// ServiceCIDRv6, one with ipFamilies [IPv6] an IPv6 one alone, and every
// pod has an address of each family on the CNI bridge.
const (
	NodeIPv6        = "fd00:200::2" // dg0, beside NodeIP: kubelet --node-ip, so the node has an IPv6 InternalIP
	UpstreamIPv6    = "fd00:200::1" // dg1: the node upstream (dnsmasq) answers here too
	PodCIDRv6       = "fd00:10:244::/64"
	ClusterCIDRv6   = "fd00:10:244::/56"
	ServiceCIDRv6   = "fd00:10:96::/112"
	nodeSubnetV6Len = "/64"
	// The second node (Config.Nodes 2): its IPv6 address on the link to
	// the first node, the first node's end of it, and its pods' range.
	Node2IPv6      = "fd00:200:2::2"
	node2LinkIPv6  = "fd00:200:2::1"
	Node2PodCIDRv6 = "fd00:10:244:1::/64"
)

// DualStack reports whether the cluster runs IPv4 and IPv6.
func (c *Cluster) DualStack() bool { return c.cfg.DualStack }

// serviceCIDRs is kube-apiserver's --service-cluster-ip-range: the
// primary family first.
func (c *Config) serviceCIDRs() string { return c.dual(ServiceCIDR, ServiceCIDRv6) }

// clusterCIDRs is kube-proxy's clusterCIDR (traffic from it is the pods').
func (c *Config) clusterCIDRs() string { return c.dual(ClusterCIDR, ClusterCIDRv6) }

// nodeIPs is kubelet's --node-ip: the node's InternalIPs.
func (c *Config) nodeIPs(n *node) string { return c.dual(n.ip, n.ipv6) }

// upstreamAddrs is dnsmasq's listen-address: the node upstream answers
// on each family's address.
func (c *Config) upstreamAddrs() string { return c.dual(UpstreamIP, UpstreamIPv6) }

func (c *Config) dual(v4, v6 string) string {
	if c.DualStack {
		return v4 + "," + v6
	}
	return v4
}

// cniRanges and cniRoutes are the bridge's host-local IPAM: one range and
// default route per family, so each pod gets an address of each and cni0
// (isGateway) becomes the gateway of both.
func (c *Config) cniRanges(n *node) string {
	r := []string{fmt.Sprintf(`[{"subnet": %q}]`, n.podCIDR)}
	if c.DualStack {
		r = append(r, fmt.Sprintf(`[{"subnet": %q}]`, n.podCIDRv6))
	}
	return "[" + strings.Join(r, ", ") + "]"
}

func (c *Config) cniRoutes() string {
	if c.DualStack {
		return `[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]`
	}
	return `[{"dst": "0.0.0.0/0"}]`
}

// ipv6Sysctls turn IPv6 on in a node's namespace (nodeSysctls): a new
// namespace takes its IPv6 defaults from the host's, which may have IPv6
// off.
var ipv6Sysctls = map[string]string{
	"net.ipv6.conf.all.disable_ipv6":     "0",
	"net.ipv6.conf.default.disable_ipv6": "0",
	"net.ipv6.conf.all.forwarding":       "1",
}

// ipv6NetnsSteps give the first node's namespace its IPv6 half: the node
// and upstream addresses beside the IPv4 ones.
// nodad: duplicate address detection would keep each address tentative
// (unusable, and dnsmasq could not bind it) for a second or two, on a link
// that holds no other host anyway. The IPv6 default route on dg0 mirrors
// the IPv4 one (kubelet and kube-proxy look up the "host interface" of
// each family through it) without a gateway: IPv6 refuses a gateway that
// is a local address, as fd00:200::1 is (both veth ends are inside).
func ipv6NetnsSteps() [][]string {
	return [][]string{
		{"ip", "-6", "addr", "add", NodeIPv6 + nodeSubnetV6Len, "dev", "dg0", "nodad"},
		{"ip", "-6", "addr", "add", UpstreamIPv6 + nodeSubnetV6Len, "dev", "dg1", "nodad"},
		{"ip", "-6", "route", "add", "default", "dev", "dg0", "metric", "100"},
	}
}
