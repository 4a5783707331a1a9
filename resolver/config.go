package resolver

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// EnvUpstreams names the environment variable with upstreams (comma or
// space separated), used when no --upstream flag is given.
const EnvUpstreams = "DNSGUARD_UPSTREAMS"

// Config is the resolver's configuration. Every field has a flag of the
// same name in kebab case; a --config file may set them too.
type Config struct {
	// Listen is the UDP and TCP address clients query (IP:PORT).
	Listen string
	// AllowNonLoopback permits a Listen address outside 127.0.0.0/8 and ::1.
	AllowNonLoopback bool
	// Upstreams are the servers queries are forwarded to (IP or IP:PORT).
	Upstreams []string
	// ResolvConf is read for upstreams when none is configured; nameservers
	// equal to Listen are skipped so the resolver never asks itself.
	ResolvConf string
	// HealthListen serves /healthz, /readyz and /metrics; empty disables.
	HealthListen string
	// MetricsListen serves /metrics only, on its own listener, so a
	// scraper can reach it from outside the pod or node (HealthListen stays
	// on loopback); empty disables.
	MetricsListen string
	// ParallelAAAA lets A and AAAA for one name go upstream at the same
	// time (still on separate sockets); by default the second waits.
	ParallelAAAA bool
	// ForceTCP sends every upstream query over TCP.
	ForceTCP bool
	// ServeStale answers with expired entries (TTL 30) when upstreams fail.
	ServeStale bool
	// StaleMaxAge is how long after expiry an entry may still be served.
	StaleMaxAge time.Duration
	// CacheSize bounds the number of cache entries.
	CacheSize int
	// CacheBytes bounds the memory of cache entries (approximate).
	CacheBytes int
	// MinTTL and MaxTTL clamp positive answers' TTLs.
	MinTTL, MaxTTL time.Duration
	// NegMaxTTL caps negative caching (NXDOMAIN/NODATA, RFC 2308).
	NegMaxTTL time.Duration
	// ServfailTTL is how long a failed resolution is cached (0: never).
	ServfailTTL time.Duration
	// PrefetchHits is how many hits make an entry popular enough to
	// refresh before it expires (0 disables prefetch).
	PrefetchHits int
	// PrefetchPercent: refresh when less than this share of the TTL is left.
	PrefetchPercent int
	// Timeout is the per-try upstream timeout before failing over.
	Timeout time.Duration
	// TotalTimeout bounds a resolution; after it the client gets SERVFAIL.
	TotalTimeout time.Duration
	// UDPSocketReuse > 1 pools upstream UDP sockets, each carrying at most
	// this many queries (a random idle one per try whose port no recent
	// query used); 0 or 1 opens a fresh socket on a random port per try.
	UDPSocketReuse int
	// MaxIdleSockets is how many idle UDP sockets each upstream keeps
	// (only with UDPSocketReuse > 0).
	MaxIdleSockets int
	// MaxInflight bounds concurrent upstream resolutions.
	MaxInflight int
	// MaxTCPConns bounds concurrent client TCP connections.
	MaxTCPConns int
	// TCPIdleTimeout closes client TCP connections idle this long.
	TCPIdleTimeout time.Duration
	// Drain is how long the resolver keeps answering after SIGTERM.
	Drain time.Duration
	// DrainIdle ends the drain early once no client query has arrived for
	// this long (0: always the full Drain).
	DrainIdle time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ReusePort binds the listeners with SO_REUSEPORT so a second instance
	// can bind the same address (rolling upgrade); node mode turns it on.
	ReusePort bool

	// NodeLocal selects node mode: one cache per node on a link-local
	// address (see nodemode.go and the README's "Node mode").
	NodeLocal bool
	// NodeLocalAddress lists the node-local listen IPs (comma separated).
	NodeLocalAddress string
	// NodeLocalIntercept lists extra IPs to answer on, typically the
	// cluster DNS Service IP for transparent interception (optional).
	NodeLocalIntercept string
	// NodeLocalInterface is the dummy interface holding those addresses.
	NodeLocalInterface string
	// NoTrack installs NOTRACK rules for the node-local addresses.
	NoTrack bool
	// ClusterDomain is the zone sent to the cluster upstreams in node mode
	// (with in-addr.arpa. and ip6.arpa.).
	ClusterDomain string
	// ClusterUpstreams are the cluster DNS servers (IP or IP:PORT).
	ClusterUpstreams []string
	// ClusterUpstreamUDP queries the cluster upstreams over UDP (with TCP on
	// truncation) instead of TCP only.
	ClusterUpstreamUDP bool

	listenAddr    netip.AddrPort
	listenAddrs   []netip.AddrPort
	upstreamAddrs []netip.AddrPort
	clusterAddrs  []netip.AddrPort
	nodeAddrs     []netip.Addr
}

// DefaultConfig returns the defaults the flags show.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:53",
		ResolvConf:      "/etc/resolv.conf",
		HealthListen:    "127.0.0.1:8053",
		StaleMaxAge:     24 * time.Hour,
		CacheSize:       10000,
		CacheBytes:      4 << 20,
		MinTTL:          0,
		MaxTTL:          time.Hour,
		NegMaxTTL:       5 * time.Minute,
		ServfailTTL:     5 * time.Second,
		PrefetchHits:    3,
		PrefetchPercent: 10,
		Timeout:         time.Second,
		TotalTimeout:    3 * time.Second,
		UDPSocketReuse:  8,
		MaxIdleSockets:  256,
		MaxInflight:     1024,
		MaxTCPConns:     64,
		TCPIdleTimeout:  10 * time.Second,
		Drain:           5 * time.Second,
		DrainIdle:       time.Second,
		LogLevel:        "info",

		NodeLocalAddress:   "169.254.20.10",
		NodeLocalInterface: "dnsguard0",
		NoTrack:            true,
		ClusterDomain:      "cluster.local",
	}
}

// stringList is a repeatable flag.
type stringList struct{ v *[]string }

func (l stringList) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l stringList) Set(s string) error {
	*l.v = append(*l.v, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })...)
	return nil
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

// FlagSet registers every Config field on a new flag set.
func (c *Config) FlagSet(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", c.Listen, "UDP and TCP `address` to answer on")
	fs.BoolVar(&c.AllowNonLoopback, "allow-non-loopback", c.AllowNonLoopback, "allow a --listen address that is not loopback")
	fs.Var(stringList{&c.Upstreams}, "upstream", "upstream `IP[:PORT]` (repeatable, or comma separated; default $"+EnvUpstreams+", then the resolv.conf nameservers)")
	fs.StringVar(&c.ResolvConf, "resolv-conf", c.ResolvConf, "`file` to take upstreams from when none is given")
	fs.StringVar(&c.HealthListen, "health-listen", c.HealthListen, "`address` for /healthz /readyz /metrics (empty: off)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "`address` serving only /metrics (plain HTTP, own listener), e.g. :9153 for a scraper on the pod network; may be non-loopback (read-only); empty: off")
	fs.BoolVar(&c.ParallelAAAA, "parallel-a-aaaa", c.ParallelAAAA, "send A and AAAA for one name upstream in parallel (default: serialized)")
	fs.BoolVar(&c.ForceTCP, "force-tcp", c.ForceTCP, "query upstreams over TCP only")
	fs.BoolVar(&c.ServeStale, "serve-stale", c.ServeStale, "answer from expired entries when upstreams fail (RFC 8767)")
	fs.DurationVar(&c.StaleMaxAge, "stale-max-age", c.StaleMaxAge, "how long past expiry an entry may be served stale")
	fs.IntVar(&c.CacheSize, "cache-size", c.CacheSize, "maximum cache `entries`")
	fs.Var(byteSize{&c.CacheBytes}, "cache-bytes", "maximum cache memory (`bytes`, k/m suffix)")
	fs.DurationVar(&c.MinTTL, "min-ttl", c.MinTTL, "lowest TTL given to cached positive answers")
	fs.DurationVar(&c.MaxTTL, "max-ttl", c.MaxTTL, "highest TTL given to cached positive answers")
	fs.DurationVar(&c.NegMaxTTL, "neg-max-ttl", c.NegMaxTTL, "cap on negative caching (NXDOMAIN/NODATA from the SOA minimum)")
	fs.DurationVar(&c.ServfailTTL, "servfail-ttl", c.ServfailTTL, "how long failures are cached (0: never, max 5m)")
	fs.IntVar(&c.PrefetchHits, "prefetch", c.PrefetchHits, "refresh entries with at least this many `hits` before expiry (0: off)")
	fs.IntVar(&c.PrefetchPercent, "prefetch-percent", c.PrefetchPercent, "prefetch when less than this `percent` of the TTL is left")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per-try upstream timeout before failing over")
	fs.DurationVar(&c.TotalTimeout, "total-timeout", c.TotalTimeout, "time budget of one resolution; then SERVFAIL")
	fs.IntVar(&c.UDPSocketReuse, "udp-socket-reuse", c.UDPSocketReuse, "upstream UDP sockets: N > 1 pools them, a random idle one per query whose port none of the previous 64 queries used, each carrying at most N `queries`; 0 or 1: a fresh socket on a random port for every query")
	fs.IntVar(&c.MaxIdleSockets, "max-idle-sockets", c.MaxIdleSockets, "idle UDP sockets kept per upstream (with --udp-socket-reuse > 1)")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "concurrent upstream resolutions before answering SERVFAIL")
	fs.IntVar(&c.MaxTCPConns, "max-tcp-conns", c.MaxTCPConns, "concurrent client TCP connections")
	fs.DurationVar(&c.TCPIdleTimeout, "tcp-idle-timeout", c.TCPIdleTimeout, "close client TCP connections idle this long")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "keep answering this long after SIGTERM (readyz fails meanwhile)")
	fs.DurationVar(&c.DrainIdle, "drain-idle", c.DrainIdle, "end the drain early once no client query has arrived for this long (a native sidecar is stopped only after the app containers, when nobody is left to ask); 0: always the full --drain")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&c.ReusePort, "reuse-port", c.ReusePort, "bind with SO_REUSEPORT so another instance can share the address (on in node mode)")
	fs.BoolVar(&c.NodeLocal, "node-local", c.NodeLocal, "node mode: answer on --node-local-address (and --node-local-intercept) at --listen's port, set up the interface and NOTRACK rules, route the cluster zones to --cluster-upstream")
	fs.StringVar(&c.NodeLocalAddress, "node-local-address", c.NodeLocalAddress, "node mode: link-local `IP`s to answer on (comma separated)")
	fs.StringVar(&c.NodeLocalIntercept, "node-local-intercept", c.NodeLocalIntercept, "node mode: also answer on these `IP`s, e.g. the cluster DNS Service IP (transparent interception)")
	fs.StringVar(&c.NodeLocalInterface, "node-local-interface", c.NodeLocalInterface, "node mode: dummy `interface` that holds the addresses")
	fs.BoolVar(&c.NoTrack, "notrack", c.NoTrack, "node mode: exempt DNS traffic to and from the node-local addresses from conntrack")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "node mode: `zone` (with in-addr.arpa and ip6.arpa) forwarded to --cluster-upstream")
	fs.Var(stringList{&c.ClusterUpstreams}, "cluster-upstream", "node mode: cluster DNS `IP[:PORT]` (repeatable); other names go to --upstream")
	fs.BoolVar(&c.ClusterUpstreamUDP, "cluster-upstream-udp", c.ClusterUpstreamUDP, "node mode: query --cluster-upstream over UDP instead of TCP only")
	file := fs.String("config", "", "`file` of settings, one `name = value` per line, names as the flags (flags win)")
	return fs, file
}

// ParseArgs builds a validated Config from command-line arguments, the
// environment (getenv) and an optional config file. Precedence: flags,
// config file, environment (upstreams only), resolv.conf (upstreams only).
func ParseArgs(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs, file := c.FlagSet("resolver")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *file != "" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if err := applyFile(fs, *file, set); err != nil {
			return c, err
		}
	}
	if len(c.Upstreams) == 0 && getenv != nil {
		if v := getenv(EnvUpstreams); v != "" {
			_ = stringList{&c.Upstreams}.Set(v)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// applyFile sets flags from a `name = value` file, skipping names already
// set on the command line.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			name, val, _ = strings.Cut(line, " ")
		}
		name = strings.TrimPrefix(strings.TrimSpace(name), "--")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if name == "config" {
			return fmt.Errorf("config file %s:%d: config cannot be nested", path, n)
		}
		if set[name] {
			continue
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("config file %s:%d: unknown setting %q", path, n, name)
		}
		if err := fs.Set(name, val); err != nil {
			return fmt.Errorf("config file %s:%d: %s=%q: %w", path, n, name, val, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

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

// Validate checks every field and resolves addresses; the error names the
// offending setting and value.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name string, val any, why string) {
		errs = append(errs, fmt.Errorf("invalid --%s=%v: %s", name, val, why))
	}
	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		bad("listen", c.Listen, "want IP:PORT")
	} else {
		c.listenAddr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		c.listenAddrs = append(c.listenAddrs[:0], c.listenAddr)
		if !c.listenAddr.Addr().IsLoopback() && !c.AllowNonLoopback && !c.NodeLocal {
			bad("listen", c.Listen, "not a loopback address (set --allow-non-loopback to permit)")
		}
	}
	if c.NodeLocal {
		errs = append(errs, c.validateNodeLocal()...)
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			bad("health-listen", c.HealthListen, "want HOST:PORT")
		}
	}
	if c.MetricsListen != "" {
		if why := checkListenAddr(c.MetricsListen); why != "" {
			bad("metrics-listen", c.MetricsListen, why)
		} else if why := c.metricsClash(); why != "" {
			bad("metrics-listen", c.MetricsListen, why)
		}
	}
	c.upstreamAddrs = c.upstreamAddrs[:0]
	for _, u := range c.Upstreams {
		a, err := parseHostPort(u, 53)
		if err != nil {
			bad("upstream", u, err.Error())
			continue
		}
		if a.Port() == 0 {
			bad("upstream", u, "port 0")
			continue
		}
		if c.isSelf(a) {
			bad("upstream", u, "is the resolver's own listen address (a loop)")
			continue
		}
		c.upstreamAddrs = append(c.upstreamAddrs, a)
	}
	if len(c.Upstreams) == 0 && len(errs) == 0 {
		ups, err := resolvConfUpstreams(c.ResolvConf, c.isSelf)
		if err != nil {
			bad("resolv-conf", c.ResolvConf, err.Error())
		} else if len(ups) == 0 {
			bad("upstream", "", "none given and "+c.ResolvConf+" has no usable nameserver")
		}
		for _, a := range ups {
			c.upstreamAddrs = append(c.upstreamAddrs, a)
			c.Upstreams = append(c.Upstreams, a.String())
		}
	}
	pos := func(name string, v int) {
		if v <= 0 {
			bad(name, v, "must be positive")
		}
	}
	pos("cache-size", c.CacheSize)
	pos("cache-bytes", c.CacheBytes)
	pos("max-idle-sockets", c.MaxIdleSockets)
	if c.UDPSocketReuse < 0 || c.UDPSocketReuse > 1000 {
		bad("udp-socket-reuse", c.UDPSocketReuse, "must be within 0..1000")
	}
	pos("max-inflight", c.MaxInflight)
	pos("max-tcp-conns", c.MaxTCPConns)
	if c.MinTTL < 0 || c.MinTTL > 24*time.Hour {
		bad("min-ttl", c.MinTTL, "must be within 0..24h")
	}
	if c.MaxTTL < time.Second || c.MaxTTL > 7*24*time.Hour {
		bad("max-ttl", c.MaxTTL, "must be within 1s..168h")
	} else if c.MinTTL > c.MaxTTL {
		bad("min-ttl", c.MinTTL, "greater than --max-ttl")
	}
	if c.NegMaxTTL < 0 || c.NegMaxTTL > 24*time.Hour {
		bad("neg-max-ttl", c.NegMaxTTL, "must be within 0..24h")
	}
	if c.ServfailTTL < 0 || c.ServfailTTL > 5*time.Minute {
		bad("servfail-ttl", c.ServfailTTL, "must be within 0..5m")
	}
	if c.StaleMaxAge < 0 {
		bad("stale-max-age", c.StaleMaxAge, "must not be negative")
	}
	if c.PrefetchHits < 0 {
		bad("prefetch", c.PrefetchHits, "must not be negative")
	}
	if c.PrefetchPercent < 1 || c.PrefetchPercent > 90 {
		bad("prefetch-percent", c.PrefetchPercent, "must be within 1..90")
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > 30*time.Second {
		bad("timeout", c.Timeout, "must be within 10ms..30s")
	}
	if c.TotalTimeout < c.Timeout || c.TotalTimeout > time.Minute {
		bad("total-timeout", c.TotalTimeout, "must be within --timeout..1m")
	}
	if c.TCPIdleTimeout < 100*time.Millisecond {
		bad("tcp-idle-timeout", c.TCPIdleTimeout, "must be at least 100ms")
	}
	if c.Drain < 0 {
		bad("drain", c.Drain, "must not be negative")
	}
	if c.DrainIdle < 0 {
		bad("drain-idle", c.DrainIdle, "must not be negative")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("log-level", c.LogLevel, err.Error())
	}
	return errors.Join(errs...)
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

// isSelf reports whether a is one of the resolver's own listen addresses,
// or a loopback address on its port when it listens on a wildcard.
func (c *Config) isSelf(a netip.AddrPort) bool {
	for _, l := range c.listenAddrs {
		if a == l || (l.Addr().IsUnspecified() && l.Port() == a.Port() && a.Addr().IsLoopback()) {
			return true
		}
	}
	return false
}

// resolvConfUpstreams reads nameserver lines, skipping those self reports
// as the resolver's own address.
func resolvConfUpstreams(path string, self func(netip.AddrPort) bool) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(strings.SplitN(fields[1], "%", 2)[0])
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if self(ap) {
			continue
		}
		out = append(out, ap)
	}
	return out, sc.Err()
}
