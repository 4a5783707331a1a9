package resolver

import (
	"flag"
	"fmt"
	"strings"
)

// RegisterFlags binds every setting of c to one flag on fs; the default
// shown is c's current value. Each usage ends with the setting's --config
// key in brackets.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "UDP and TCP `address` to answer on [listen]")
	fs.BoolVar(&c.AllowNonLoopback, "allow-non-loopback", c.AllowNonLoopback, "allow a --listen address that is not loopback [allowNonLoopback]")
	fs.Var(&stringList{v: &c.Upstreams}, "upstream", "upstream `IP[:PORT]` (repeatable, or comma separated; default $"+EnvUpstreams+", then the resolv.conf nameservers) [upstreams]")
	fs.StringVar(&c.ResolvConf, "resolv-conf", c.ResolvConf, "`file` to take upstreams from when none is given [resolvConf]")
	fs.StringVar(&c.HealthListen, "health-listen", c.HealthListen, "`address` for /healthz /readyz /metrics (empty: off) [healthListen]")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "`address` serving only /metrics (plain HTTP, own listener), e.g. :9153 for a scraper on the pod network; may be non-loopback (read-only); empty: off [metricsListen]")
	fs.BoolVar(&c.ParallelAAAA, "parallel-a-aaaa", c.ParallelAAAA, "send A and AAAA for one name upstream in parallel (default: serialized) [parallelAAAA]")
	fs.BoolVar(&c.ForceTCP, "force-tcp", c.ForceTCP, "query upstreams over TCP only [forceTCP]")
	fs.BoolVar(&c.ServeStale, "serve-stale", c.ServeStale, "answer from expired entries when upstreams fail (RFC 8767) [serveStale]")
	fs.DurationVar(&c.StaleMaxAge, "stale-max-age", c.StaleMaxAge, "how long past expiry an entry may be served stale [staleMaxAge]")
	fs.IntVar(&c.CacheSize, "cache-size", c.CacheSize, "maximum cache `entries` [cacheSize]")
	fs.Var(byteSize{&c.CacheBytes}, "cache-bytes", "maximum cache memory (`bytes`, k/m suffix; a number of bytes in the file) [cacheBytes]")
	fs.DurationVar(&c.MinTTL, "min-ttl", c.MinTTL, "lowest TTL given to cached positive answers [minTTL]")
	fs.DurationVar(&c.MaxTTL, "max-ttl", c.MaxTTL, "highest TTL given to cached positive answers [maxTTL]")
	fs.DurationVar(&c.NegMaxTTL, "neg-max-ttl", c.NegMaxTTL, "cap on negative caching (NXDOMAIN/NODATA from the SOA minimum) [negMaxTTL]")
	fs.DurationVar(&c.ServfailTTL, "servfail-ttl", c.ServfailTTL, "how long failures are cached (0: never, max 5m) [servfailTTL]")
	fs.IntVar(&c.PrefetchHits, "prefetch", c.PrefetchHits, "refresh entries with at least this many `hits` before expiry (0: off) [prefetchHits]")
	fs.IntVar(&c.PrefetchPercent, "prefetch-percent", c.PrefetchPercent, "prefetch when less than this `percent` of the TTL is left [prefetchPercent]")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "ceiling of the per-try upstream timeout, which adapts to each upstream's measured RTT (smoothed RTT + 4 x variance, doubled for each further try of one query); then the next try goes out while earlier ones keep listening [timeout]")
	fs.DurationVar(&c.MinTimeout, "min-timeout", c.MinTimeout, "floor of the adaptive per-try upstream timeout (capped by --timeout; set both equal for a fixed timeout) [minTimeout]")
	fs.DurationVar(&c.TotalTimeout, "total-timeout", c.TotalTimeout, "time budget of one resolution; then SERVFAIL [totalTimeout]")
	fs.IntVar(&c.UDPSocketReuse, "udp-socket-reuse", c.UDPSocketReuse, "upstream UDP sockets: N > 1 pools them, a random idle one per query whose port none of the previous 64 queries used, each carrying at most N `queries`; 0 or 1: a fresh socket on a random port for every query [udpSocketReuse]")
	fs.IntVar(&c.MaxIdleSockets, "max-idle-sockets", c.MaxIdleSockets, "idle UDP sockets kept per upstream (with --udp-socket-reuse > 1) [maxIdleSockets]")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "concurrent upstream resolutions before answering SERVFAIL [maxInflight]")
	fs.IntVar(&c.MaxTCPConns, "max-tcp-conns", c.MaxTCPConns, "concurrent client TCP connections [maxTCPConns]")
	fs.DurationVar(&c.TCPIdleTimeout, "tcp-idle-timeout", c.TCPIdleTimeout, "close client TCP connections idle this long [tcpIdleTimeout]")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "keep answering this long after SIGTERM (readyz fails meanwhile) [drain]")
	fs.DurationVar(&c.DrainIdle, "drain-idle", c.DrainIdle, "end the drain early once no client query has arrived for this long (a native sidecar is stopped only after the app containers, when nobody is left to ask); 0: always the full --drain [drainIdle]")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error [logLevel]")
	fs.BoolVar(&c.ReusePort, "reuse-port", c.ReusePort, "bind with SO_REUSEPORT so another instance can share the address (always on in node mode) [reusePort]")
	fs.BoolVar(&c.NodeLocal, "node-local", c.NodeLocal, "node mode: answer on --node-local-address (and --node-local-intercept) at --listen's port, set up the interface and NOTRACK rules, route the cluster zones to --cluster-upstream [nodeLocal]")
	fs.StringVar(&c.NodeLocalAddress, "node-local-address", c.NodeLocalAddress, "node mode: link-local `IP`s to answer on (comma separated) [nodeLocalAddress]")
	fs.StringVar(&c.NodeLocalIntercept, "node-local-intercept", c.NodeLocalIntercept, "node mode: also answer on these `IP`s, e.g. the cluster DNS Service IP (transparent interception) [nodeLocalIntercept]")
	fs.StringVar(&c.NodeLocalInterface, "node-local-interface", c.NodeLocalInterface, "node mode: dummy `interface` that holds the addresses [nodeLocalInterface]")
	fs.BoolVar(&c.NoTrack, "notrack", c.NoTrack, "node mode: exempt DNS traffic to and from the node-local addresses from conntrack [noTrack]")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "node mode: `zone` (with in-addr.arpa and ip6.arpa) forwarded to --cluster-upstream [clusterDomain]")
	fs.Var(&stringList{v: &c.ClusterUpstreams}, "cluster-upstream", "node mode: cluster DNS `IP[:PORT]` (repeatable); other names go to --upstream [clusterUpstreams]")
	fs.BoolVar(&c.ClusterUpstreamUDP, "cluster-upstream-udp", c.ClusterUpstreamUDP, "node mode: query --cluster-upstream over UDP instead of TCP only [clusterUpstreamUDP]")
}

// stringList is a repeatable, comma or space separated flag. The first
// use on a command line replaces the list (from the defaults or the
// --config file), later uses append.
type stringList struct {
	v   *[]string
	set bool
}

func (l *stringList) String() string {
	if l == nil || l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l *stringList) Set(s string) error {
	if !l.set {
		*l.v, l.set = nil, true
	}
	*l.v = append(*l.v, splitList(s)...)
	return nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// byteSize parses 4194304, 4096k, 4m.
type byteSize struct{ v *int }

func (b byteSize) String() string {
	if b.v == nil {
		return "0"
	}
	return fmt.Sprint(*b.v)
}

func (b byteSize) Set(s string) error {
	mult := 1
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "kib"):
		mult, t = 1<<10, strings.TrimRight(t, "kib")
	case strings.HasSuffix(t, "m"), strings.HasSuffix(t, "mib"):
		mult, t = 1<<20, strings.TrimRight(t, "mib")
	}
	var n int
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || fmt.Sprint(n) != t {
		return fmt.Errorf("not a size: %q", s)
	}
	*b.v = n * mult
	return nil
}
