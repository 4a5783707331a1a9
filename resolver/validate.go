package resolver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// badSetting is the one form of every configuration error: the flag, its
// --config key and the value.
func badSetting(flagName, key string, val any, why string) error {
	return fmt.Errorf("invalid --%s=%v [%s]: %s", flagName, val, key, why)
}

// Validate checks every setting and keeps the parsed addresses for New,
// ListenAddrs and NodeAddrs (unexported fields). It changes no setting and
// reads no file: upstreams must be configured, or filled by
// ResolveUpstreams, before. The error names each bad setting and value.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flagName, key string, val any, why string) {
		errs = append(errs, badSetting(flagName, key, val, why))
	}
	var lerrs []error
	c.listenAddr, c.listenAddrs, c.nodeAddrs, lerrs = c.listeners()
	errs = append(errs, lerrs...)
	if c.NodeLocal {
		errs = append(errs, c.validateNodeLocal()...)
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			bad("health-listen", "healthListen", c.HealthListen, "want HOST:PORT")
		}
	}
	if c.MetricsListen != "" {
		if why := checkListenAddr(c.MetricsListen); why != "" {
			bad("metrics-listen", "metricsListen", c.MetricsListen, why)
		} else if why := c.metricsClash(); why != "" {
			bad("metrics-listen", "metricsListen", c.MetricsListen, why)
		}
	}
	c.upstreamAddrs = c.upstreamAddrs[:0]
	for _, u := range c.Upstreams {
		a, err := parseHostPort(u, 53)
		switch {
		case err != nil:
			bad("upstream", "upstreams", u, err.Error())
		case a.Port() == 0:
			bad("upstream", "upstreams", u, "port 0")
		case isSelf(c.listenAddrs, a):
			bad("upstream", "upstreams", u, "is the resolver's own listen address (a loop)")
		default:
			c.upstreamAddrs = append(c.upstreamAddrs, a)
		}
	}
	if len(c.Upstreams) == 0 {
		bad("upstream", "upstreams", "", "none configured (the resolv.conf nameservers are read by ResolveUpstreams)")
	}
	pos := func(flagName, key string, v int) {
		if v <= 0 {
			bad(flagName, key, v, "must be positive")
		}
	}
	pos("cache-size", "cacheSize", c.CacheSize)
	pos("cache-bytes", "cacheBytes", c.CacheBytes)
	pos("max-idle-sockets", "maxIdleSockets", c.MaxIdleSockets)
	if c.UDPSocketReuse < 0 || c.UDPSocketReuse > 1000 {
		bad("udp-socket-reuse", "udpSocketReuse", c.UDPSocketReuse, "must be within 0..1000")
	}
	pos("max-inflight", "maxInflight", c.MaxInflight)
	pos("max-tcp-conns", "maxTCPConns", c.MaxTCPConns)
	if c.MinTTL < 0 || c.MinTTL > 24*time.Hour {
		bad("min-ttl", "minTTL", c.MinTTL, "must be within 0..24h")
	}
	if c.MaxTTL < time.Second || c.MaxTTL > 7*24*time.Hour {
		bad("max-ttl", "maxTTL", c.MaxTTL, "must be within 1s..168h")
	} else if c.MinTTL > c.MaxTTL {
		bad("min-ttl", "minTTL", c.MinTTL, "greater than --max-ttl")
	}
	if c.NegMaxTTL < 0 || c.NegMaxTTL > 24*time.Hour {
		bad("neg-max-ttl", "negMaxTTL", c.NegMaxTTL, "must be within 0..24h")
	}
	if c.ServfailTTL < 0 || c.ServfailTTL > 5*time.Minute {
		bad("servfail-ttl", "servfailTTL", c.ServfailTTL, "must be within 0..5m")
	}
	if c.StaleMaxAge < 0 {
		bad("stale-max-age", "staleMaxAge", c.StaleMaxAge, "must not be negative")
	}
	if c.PrefetchHits < 0 {
		bad("prefetch", "prefetchHits", c.PrefetchHits, "must not be negative")
	}
	if c.PrefetchPercent < 1 || c.PrefetchPercent > 90 {
		bad("prefetch-percent", "prefetchPercent", c.PrefetchPercent, "must be within 1..90")
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > 30*time.Second {
		bad("timeout", "timeout", c.Timeout, "must be within 10ms..30s")
	}
	if c.MinTimeout < time.Millisecond || c.MinTimeout > 30*time.Second {
		bad("min-timeout", "minTimeout", c.MinTimeout, "must be within 1ms..30s")
	}
	if c.TotalTimeout < c.Timeout || c.TotalTimeout > time.Minute {
		bad("total-timeout", "totalTimeout", c.TotalTimeout, "must be within --timeout..1m")
	}
	if c.TCPIdleTimeout < 100*time.Millisecond {
		bad("tcp-idle-timeout", "tcpIdleTimeout", c.TCPIdleTimeout, "must be at least 100ms")
	}
	if c.Drain < 0 {
		bad("drain", "drain", c.Drain, "must not be negative")
	}
	if c.DrainIdle < 0 {
		bad("drain-idle", "drainIdle", c.DrainIdle, "must not be negative")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("log-level", "logLevel", c.LogLevel, err.Error())
	}
	return errors.Join(errs...)
}

// listeners parses the addresses the server binds: --listen, or in node
// mode the node-local and intercept IPs at --listen's port.
func (c *Config) listeners() (listen netip.AddrPort, all []netip.AddrPort, node []netip.Addr, errs []error) {
	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		return listen, nil, nil, []error{badSetting("listen", "listen", c.Listen, "want IP:PORT")}
	}
	listen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if c.NodeLocal {
		node, all, errs = c.nodeListeners(listen.Port())
		return listen, all, node, errs
	}
	if !listen.Addr().IsLoopback() && !c.AllowNonLoopback {
		errs = append(errs, badSetting("listen", "listen", c.Listen, "not a loopback address (set --allow-non-loopback to permit)"))
	}
	return listen, []netip.AddrPort{listen}, nil, errs
}

// reusePort says whether listeners bind with SO_REUSEPORT: on request, and
// always in node mode, where the next version binds beside this one.
func (c *Config) reusePort() bool { return c.ReusePort || c.NodeLocal }

// parseHostPort accepts IP, IP:PORT and [IPv6]:PORT.
func parseHostPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), defPort), nil
	}
	return netip.AddrPort{}, fmt.Errorf("not IP or IP:PORT")
}

// metricsClash says why MetricsListen would share a TCP port with the
// health or DNS listeners, or "". With SO_REUSEPORT (node mode) both binds
// could succeed and connections would land on either, so it is refused
// here rather than left to the kernel. Port 0 never clashes.
func (c *Config) metricsClash() string {
	mh, mp, _ := net.SplitHostPort(c.MetricsListen)
	if mp == "0" {
		return ""
	}
	if c.listenAddr.IsValid() && mp == strconv.Itoa(int(c.listenAddr.Port())) {
		return "same port as the DNS listener (--listen)"
	}
	hh, hp, err := net.SplitHostPort(c.HealthListen)
	if c.HealthListen == "" || err != nil || hp != mp {
		return ""
	}
	wild := func(h string) bool {
		a, err := netip.ParseAddr(h)
		return h == "" || err == nil && a.IsUnspecified()
	}
	if mh == hh || wild(mh) || wild(hh) {
		return "same port as --health-listen on an overlapping address"
	}
	return ""
}

// checkListenAddr says what is wrong with a TCP listen address HOST:PORT
// (HOST may be empty for every interface, or an IP; PORT a number), or "".
// Names are refused: resolving them at start would make the address depend
// on DNS, which this process is there to provide.
func checkListenAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "want [IP]:PORT"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		return "port must be a number within 0..65535"
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return "host must be an IP address or empty"
		}
	}
	return ""
}

// isSelf reports whether a is one of the listen addresses, or a loopback
// address on their port when one is a wildcard.
func isSelf(listens []netip.AddrPort, a netip.AddrPort) bool {
	for _, l := range listens {
		if a == l || (l.Addr().IsUnspecified() && l.Port() == a.Port() && a.Addr().IsLoopback()) {
			return true
		}
	}
	return false
}
