package resolver

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Node mode: one resolver per node (a hostNetwork DaemonSet) answering on
// a link-local address instead of 127.0.0.1 in every pod. The interface,
// addresses and NOTRACK rules are set up by cmd/resolver through package
// resolver/nodelocal, which keeps netlink out of this package; here live
// the configuration, the listeners (one per address, SO_REUSEPORT) and the
// per-zone upstream routing.

// nodeListeners parses the node-mode listen addresses: the node-local and
// intercept IPs, each at port.
func (c *Config) nodeListeners(port uint16) (node []netip.Addr, all []netip.AddrPort, errs []error) {
	seen := map[netip.Addr]bool{}
	add := func(flagName, key, list string) {
		for _, f := range splitList(list) {
			a, err := netip.ParseAddr(f)
			if err != nil || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
				errs = append(errs, badSetting(flagName, key, f, "want a unicast IP"))
				continue
			}
			a = a.Unmap()
			if seen[a] {
				continue
			}
			seen[a] = true
			node = append(node, a)
			all = append(all, netip.AddrPortFrom(a, port))
		}
	}
	add("node-local-address", "nodeLocalAddress", c.NodeLocalAddress)
	if len(node) == 0 && len(errs) == 0 {
		errs = append(errs, badSetting("node-local-address", "nodeLocalAddress", c.NodeLocalAddress, "node mode needs at least one address"))
	}
	add("node-local-intercept", "nodeLocalIntercept", c.NodeLocalIntercept)
	return node, all, errs
}

// validateNodeLocal checks the other node-mode settings (the listen
// addresses are parsed by nodeListeners) and keeps the cluster upstreams.
func (c *Config) validateNodeLocal() []error {
	var errs []error
	bad := func(flagName, key string, val any, why string) {
		errs = append(errs, badSetting(flagName, key, val, why))
	}
	if n := c.NodeLocalInterface; n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t") {
		bad("node-local-interface", "nodeLocalInterface", n, "want an interface name of 1..15 characters")
	}
	if _, ok := wireZone(c.ClusterDomain); !ok {
		bad("cluster-domain", "clusterDomain", c.ClusterDomain, "not a domain name")
	}
	c.clusterAddrs = c.clusterAddrs[:0]
	for _, u := range c.ClusterUpstreams {
		a, err := parseHostPort(u, 53)
		switch {
		case err != nil:
			bad("cluster-upstream", "clusterUpstreams", u, err.Error())
		case a.Port() == 0:
			bad("cluster-upstream", "clusterUpstreams", u, "port 0")
		case isSelf(c.listenAddrs, a):
			// With interception the Service IP is ours on this node: the
			// cluster DNS must then be reached by another address (the
			// kube-dns endpoints or a second Service).
			bad("cluster-upstream", "clusterUpstreams", u, "is one of the resolver's own listen addresses (a loop)")
		default:
			c.clusterAddrs = append(c.clusterAddrs, a)
		}
	}
	if len(c.ClusterUpstreams) == 0 {
		bad("cluster-upstream", "clusterUpstreams", "", "node mode needs the cluster DNS address")
	}
	return errs
}

// NodeAddrs returns the addresses node mode answers on (node-local first,
// then intercepted ones); empty outside node mode. Valid after Validate.
func (c *Config) NodeAddrs() []netip.Addr { return c.nodeAddrs }

// ListenAddrs returns every address the server binds. Valid after Validate.
func (c *Config) ListenAddrs() []netip.AddrPort { return c.listenAddrs }

// wireZone turns a domain name into lowercase wire format.
func wireZone(name string) ([]byte, bool) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if name == "" {
		return []byte{0}, true
	}
	var out []byte
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return nil, false
		}
		out = append(append(out, byte(len(l))), l...)
	}
	out = append(out, 0)
	return out, len(out) <= 255
}

// route sends names at or under zone to fwd.
type route struct {
	zone []byte // lowercase wire format
	fwd  *Forwarder
}

// inZone reports whether the lowercase wire name is zone or a name under
// it, comparing at label boundaries only (so "xcluster.local" is not in
// "cluster.local").
func inZone(name, zone []byte) bool {
	for i := 0; i < len(name) && name[i] != 0; i += 1 + int(name[i]) {
		if len(name)-i == len(zone) {
			return string(name[i:]) == string(zone)
		}
		if len(name)-i < len(zone) {
			return false
		}
	}
	return len(zone) == 1 && zone[0] == 0
}

// forwarder picks the upstream group for a lowercase wire name: the first
// route whose zone contains it, else the default group. Only misses get
// here; the cache hit path never looks at zones.
func (s *Server) forwarder(name []byte) *Forwarder {
	for _, r := range s.routes {
		if inZone(name, r.zone) {
			return r.fwd
		}
	}
	return s.fwd
}

// forwarders lists every upstream group, default first.
func (s *Server) forwarders() []*Forwarder {
	out := []*Forwarder{s.fwd}
	for _, r := range s.routes {
		if r.fwd != out[len(out)-1] {
			out = append(out, r.fwd)
		}
	}
	return out
}

// healthyUpstreams counts healthy and configured upstreams over all groups.
func (s *Server) healthyUpstreams() (healthy, total int) {
	for _, f := range s.forwarders() {
		healthy += f.Healthy()
		total += len(f.ups)
	}
	return healthy, total
}

// waitUpstream probes the readiness group (the cluster upstreams in node
// mode) with "<cluster domain> SOA" until one answers, then marks the server
// ready: a node cache that cannot reach the cluster DNS must not look ready.
// The cluster DNS answers its own zone's SOA itself; ". NS" would depend on
// the cluster DNS's upstreams, which refuse it in an air-gapped cluster (seen
// on the e2e node: the cache never became ready). Probes back off to 2 s and
// stop when the server shuts down.
func (s *Server) waitUpstream(f *Forwarder) {
	defer s.bg.Done()
	zone, ok := wireZone(s.cfg.ClusterDomain)
	if !ok {
		zone = []byte{0}
	}
	wait := 100 * time.Millisecond
	for !s.closing.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), f.budget)
		_, err := f.Exchange(ctx, zone, typeSOA, classIN, false, false)
		cancel()
		if err == nil {
			s.ready.Store(true)
			s.log.Info("upstream answered; ready")
			return
		}
		s.rlog.Warn("waiting for an upstream to answer before turning ready", "err", err)
		for t := time.Duration(0); t < wait && !s.closing.Load(); t += 50 * time.Millisecond {
			time.Sleep(50 * time.Millisecond)
		}
		wait = min(2*wait, 2*time.Second)
	}
}
