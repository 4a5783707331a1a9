package resolver

import (
	"net/netip"
	"time"
)

// Config is the resolver's configuration. Each field is one setting: its
// json tag is the key in the --config YAML file and RegisterFlags binds it
// to one flag (the kebab-case name). cmd/resolver loads them in the order
// defaults, file, flags; ResolveUpstreams then fills Upstreams when none is
// configured, and New validates.
type Config struct {
	// Listen is the UDP and TCP address clients query (IP:PORT).
	Listen string `json:"listen"`
	// AllowNonLoopback permits a Listen address outside 127.0.0.0/8 and ::1.
	AllowNonLoopback bool `json:"allowNonLoopback"`
	// Upstreams are the servers queries are forwarded to (IP or IP:PORT).
	Upstreams []string `json:"upstreams"`
	// ResolvConf is read for upstreams when none is configured; nameservers
	// equal to Listen are skipped so the resolver never asks itself.
	ResolvConf string `json:"resolvConf"`
	// HealthListen serves /healthz, /readyz and /metrics; empty disables.
	HealthListen string `json:"healthListen"`
	// MetricsListen serves /metrics only, on its own listener, so a
	// scraper can reach it from outside the pod or node (HealthListen stays
	// on loopback); empty disables.
	MetricsListen string `json:"metricsListen"`
	// ParallelAAAA lets A and AAAA for one name go upstream at the same
	// time (still on separate sockets); by default the second waits.
	ParallelAAAA bool `json:"parallelAAAA"`
	// ForceTCP sends every upstream query over TCP.
	ForceTCP bool `json:"forceTCP"`
	// ServeStale answers with expired entries (TTL 30) when upstreams fail.
	ServeStale bool `json:"serveStale"`
	// StaleMaxAge is how long after expiry an entry may still be served.
	StaleMaxAge time.Duration `json:"staleMaxAge"`
	// CacheSize bounds the number of cache entries.
	CacheSize int `json:"cacheSize"`
	// CacheBytes bounds the memory of cache entries (approximate).
	CacheBytes int `json:"cacheBytes"`
	// MinTTL and MaxTTL clamp positive answers' TTLs.
	MinTTL time.Duration `json:"minTTL"`
	MaxTTL time.Duration `json:"maxTTL"`
	// NegMaxTTL caps negative caching (NXDOMAIN/NODATA, RFC 2308).
	NegMaxTTL time.Duration `json:"negMaxTTL"`
	// ServfailTTL is how long a failed resolution is cached (0: never).
	ServfailTTL time.Duration `json:"servfailTTL"`
	// PrefetchHits is how many hits make an entry popular enough to
	// refresh before it expires (0 disables prefetch).
	PrefetchHits int `json:"prefetchHits"`
	// PrefetchPercent: refresh when less than this share of the TTL is left.
	PrefetchPercent int `json:"prefetchPercent"`
	// Timeout is the ceiling of the per-try upstream timeout, which adapts
	// to each upstream's measured round-trip time (rto.go).
	Timeout time.Duration `json:"timeout"`
	// MinTimeout is the floor of the adaptive per-try timeout (at most
	// Timeout: the smaller of the two wins).
	MinTimeout time.Duration `json:"minTimeout"`
	// TotalTimeout bounds a resolution; after it the client gets SERVFAIL.
	TotalTimeout time.Duration `json:"totalTimeout"`
	// UDPSocketReuse > 1 pools upstream UDP sockets, each carrying at most
	// this many queries (a random idle one per try whose port no recent
	// query used); 0 or 1 opens a fresh socket on a random port per try.
	UDPSocketReuse int `json:"udpSocketReuse"`
	// MaxIdleSockets is how many idle UDP sockets each upstream keeps
	// (only with UDPSocketReuse > 0).
	MaxIdleSockets int `json:"maxIdleSockets"`
	// MaxInflight bounds concurrent upstream resolutions.
	MaxInflight int `json:"maxInflight"`
	// MaxTCPConns bounds concurrent client TCP connections.
	MaxTCPConns int `json:"maxTCPConns"`
	// TCPIdleTimeout closes client TCP connections idle this long.
	TCPIdleTimeout time.Duration `json:"tcpIdleTimeout"`
	// Drain is how long the resolver keeps answering after SIGTERM.
	Drain time.Duration `json:"drain"`
	// DrainIdle ends the drain early once no client query has arrived for
	// this long (0: always the full Drain).
	DrainIdle time.Duration `json:"drainIdle"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel"`
	// ReusePort binds the listeners with SO_REUSEPORT so a second instance
	// can bind the same address (rolling upgrade); node mode turns it on.
	ReusePort bool `json:"reusePort"`

	// NodeLocal selects node mode: one cache per node on a link-local
	// address (see nodemode.go and the README's "Node mode").
	NodeLocal bool `json:"nodeLocal"`
	// NodeLocalAddress lists the node-local listen IPs (comma separated).
	NodeLocalAddress string `json:"nodeLocalAddress"`
	// NodeLocalIntercept lists extra IPs to answer on, typically the
	// cluster DNS Service IP for transparent interception (optional).
	NodeLocalIntercept string `json:"nodeLocalIntercept"`
	// NodeLocalInterface is the dummy interface holding those addresses.
	NodeLocalInterface string `json:"nodeLocalInterface"`
	// NoTrack installs NOTRACK rules for the node-local addresses.
	NoTrack bool `json:"noTrack"`
	// ClusterDomain is the zone sent to the cluster upstreams in node mode
	// (with in-addr.arpa. and ip6.arpa.).
	ClusterDomain string `json:"clusterDomain"`
	// ClusterUpstreams are the cluster DNS servers (IP or IP:PORT).
	ClusterUpstreams []string `json:"clusterUpstreams"`
	// ClusterUpstreamUDP queries the cluster upstreams over UDP (with TCP on
	// truncation) instead of TCP only.
	ClusterUpstreamUDP bool `json:"clusterUpstreamUDP"`

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
		MinTimeout:      DefaultMinTimeout,
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
