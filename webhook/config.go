package webhook

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dnsguard/dnsguard/cmd/buildinfo"
)

// Modes a pod can be handled in.
const (
	// ModeOff leaves the pod alone.
	ModeOff = "off"
	// ModeDNSConfig sets dnsPolicy None and a tuned dnsConfig.
	ModeDNSConfig = "dnsconfig"
	// ModeSidecar additionally injects the caching resolver as a native sidecar.
	ModeSidecar = "sidecar"
)

// Annotations the webhook reads and writes.
const (
	// AnnotationMode on a pod selects its mode (off|dnsconfig|sidecar).
	AnnotationMode = "dnsguard.io/mode"
	// AnnotationInjected marks a pod the webhook already patched; its value
	// is the mode applied. A pod carrying it gets an empty patch.
	AnnotationInjected = "dnsguard.io/injected"
	// AnnotationNamespaceDefaultMode on a Namespace sets the default mode of
	// its pods.
	AnnotationNamespaceDefaultMode = "dnsguard.io/default-mode"
	// annotationMirror marks static pods mirrored by the kubelet; the kubelet
	// ignores any change the webhook would make to them.
	annotationMirror = "kubernetes.io/config.mirror"
)

// SidecarName is the name of the injected resolver init container.
const SidecarName = "dnsguard-resolver"

// DefaultSidecarImage is the resolver image of the webhook's own release
// (ghcr.io/dnsguard/resolver:0.2.0 from a binary built by make release),
// so a webhook run without the chart injects a resolver of its version;
// ":latest" from a development build. The chart always sets the image,
// pinned by digest.
func DefaultSidecarImage() string {
	if buildinfo.Released() {
		return "ghcr.io/dnsguard/resolver:" + buildinfo.Version
	}
	return "ghcr.io/dnsguard/resolver:latest"
}

// Defaults for Config fields.
const (
	DefaultListen          = ":8443"
	DefaultClusterDomain   = "cluster.local"
	DefaultDNSService      = "kube-system/kube-dns"
	DefaultMaxRequestBytes = 3 << 20
	DefaultRecheck         = 30 * time.Second
	// DefaultRequestBudgetBytes keeps the webhook under 128 MiB of RSS with
	// no container limit or GOMEMLIMIT: bodies are charged three times
	// their size (body, decoded strings, garbage until the next GC), and
	// the Go heap may grow to twice what is live before collecting, so 32
	// MiB charged is at most ~64 MiB of heap on top of a ~20 MiB process.
	// It admits two maximum-size (3 MiB) reviews at once, and ordinary
	// ones always have a quarter of it to themselves.
	DefaultRequestBudgetBytes = 32 << 20
	// DefaultBodyReadTimeout bounds reading one request body; the API
	// server's own webhook timeout is at most 30 s (default 10 s).
	DefaultBodyReadTimeout = 10 * time.Second
)

// DNSOption is one resolv.conf option, rendered "name" or "name:value".
type DNSOption struct {
	// Name of the option, e.g. ndots.
	Name string `json:"name"`
	// Value of the option; nil for flag options like single-request-reopen.
	Value *string `json:"value,omitempty"`
}

// SidecarConfig describes the injected resolver container.
type SidecarConfig struct {
	// Image of the resolver; its binary is /resolver.
	Image string `json:"image"`
	// ImagePullPolicy of the sidecar; empty leaves the Kubernetes default.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Fallback keeps the cluster DNS as second nameserver after 127.0.0.1 so
	// pods still resolve if the sidecar dies. Trade-off: musl (Alpine) sends
	// every query to all nameservers at once, so for musl images the fallback
	// doubles the queries reaching the cluster DNS (and reintroduces the
	// conntrack race for half of them, though the sidecar's answer wins).
	Fallback bool `json:"fallback"`
	// Resources of the sidecar: requests and limits for cpu and memory
	// (measured defaults); per pod or namespace the dnsguard.io/sidecar-cpu,
	// -cpu-limit, -memory and -memory-limit annotations override them.
	Resources corev1.ResourceRequirements `json:"resources"`
	// RunAsUser is the non-root UID (and GID) of the sidecar. 0 leaves both
	// to the platform (OpenShift's SCC assigns them from the namespace's
	// range and rejects others); runAsNonRoot stays true either way.
	RunAsUser int64 `json:"runAsUser"`
	// ExtraArgs are appended to the resolver's command line (cache size,
	// timeouts, --serve-stale ...).
	ExtraArgs []string `json:"extraArgs,omitempty"`
	// ImagePullSecrets are Secret names (in the pod's namespace) added to
	// the spec.imagePullSecrets of pods that get the sidecar, unless the pod
	// already lists them, so a private resolver image can be pulled.
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`
	// MetricsPort, when not 0, makes the resolver serve /metrics on the
	// pod IP at this TCP port (--metrics-listen=:PORT) and declares it as
	// the named container port SidecarMetricsPortName, so a PodMonitor can
	// scrape it; 0 (the default) leaves the injected container unchanged.
	MetricsPort int32 `json:"metricsPort,omitempty"`
}

// Config is the webhook's whole configuration. Each field is one setting:
// its json tag is the key in the --config YAML file and RegisterFlags binds
// it to at most one flag (nested values such as sidecar.resources are file
// only). cmd/webhook loads them in the order defaults, file, flags.
type Config struct {
	// Listen is the HTTPS listen address.
	Listen string `json:"listen"`
	// MetricsListen, when set, is a plain-HTTP address serving /metrics,
	// /explain, /healthz and /readyz; the HTTPS listener then serves only
	// /mutate, /healthz and /readyz. Empty keeps everything on Listen.
	MetricsListen string `json:"metricsListen"`
	// TLSCertFile and TLSKeyFile are the serving certificate and key (PEM);
	// they are re-read when they change on disk.
	TLSCertFile string `json:"tlsCertFile"`
	TLSKeyFile  string `json:"tlsKeyFile"`
	// Nameservers are the cluster DNS addresses written into pods. Empty
	// means: discover the ClusterIP of DNSService through the API server.
	Nameservers []string `json:"nameservers"`
	// DNSService is the namespace/name of the cluster DNS Service used for
	// discovery when Nameservers is empty.
	DNSService string `json:"dnsService"`
	// Kubeconfig is a kubeconfig path for discovery and namespace defaults;
	// empty means in-cluster configuration.
	Kubeconfig string `json:"kubeconfig"`
	// ClusterDomain is the cluster's DNS domain (search path suffix).
	ClusterDomain string `json:"clusterDomain"`
	// DefaultMode applies when neither the pod nor its namespace choose one.
	DefaultMode string `json:"defaultMode"`
	// DNSOptions are the resolv.conf options set on patched pods, in order.
	DNSOptions []DNSOption `json:"dnsOptions"`
	// Sidecar configures the resolver injected in sidecar mode.
	Sidecar SidecarConfig `json:"sidecar"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel"`
	// MaxRequestBytes bounds request bodies; larger ones get 413.
	MaxRequestBytes int64 `json:"maxRequestBytes"`
	// RequestBudgetBytes bounds the memory all request bodies being read or
	// handled may pin at once (charged at 3× their size); a request that
	// does not fit gets 429 with Retry-After. A quarter is kept for bodies
	// of 64 KiB or less so ordinary pods are served while big ones are shed.
	RequestBudgetBytes int64 `json:"requestBudgetBytes"`
	// BodyReadTimeout bounds reading one request body (slow clients).
	BodyReadTimeout time.Duration `json:"bodyReadTimeout"`
	// RecheckInterval is how often the DNS Service is looked up again.
	RecheckInterval time.Duration `json:"recheckInterval"`
	// NamespaceDefaults enables the per-namespace default mode (a Namespace
	// informer; needs list/watch on namespaces).
	NamespaceDefaults bool `json:"namespaceDefaults"`
	// NodeLocal points pods (or their sidecars) at a per-node cache first.
	NodeLocal NodeLocalConfig `json:"nodeLocal"`
	// ExtraSearchDomains are your nodes' search domains (the search line
	// of the resolv.conf the kubelet reads, --resolv-conf), appended after
	// the cluster ones the way ClusterFirst appends them. The webhook cannot
	// see the nodes' resolv.conf, so without this, short names that only
	// resolved through a node suffix (ec2.internal, a corporate domain) stop
	// resolving in patched pods.
	ExtraSearchDomains []string `json:"extraSearchDomains,omitempty"`
	// ShutdownDelay: on SIGTERM, /readyz fails at once but new and
	// in-flight requests are served this long, so API servers and
	// kube-proxy stop sending here before the listener closes.
	ShutdownDelay time.Duration `json:"shutdownDelay"`
	// ShutdownTimeout is how long requests still in flight after
	// ShutdownDelay may take before connections are closed.
	ShutdownTimeout time.Duration `json:"shutdownTimeout"`
	// TLSSecret is namespace/name of the serving Secret to watch through
	// the API, so a renewed certificate is served within a second rather
	// than after the kubelet's volume refresh; empty: the files only.
	TLSSecret string `json:"tlsSecret,omitempty"`
	// NativeSidecars says whether sidecar mode may inject the resolver as a
	// native sidecar (an init container with restartPolicy Always): auto
	// asks the API server (NativeSidecarDetector), on assumes it, off never
	// injects it (sidecar mode gives dnsconfig mode, with a warning).
	NativeSidecars string `json:"nativeSidecars"`
	// NativeSidecarRefresh is how often auto asks again (an API server or
	// node upgrade changes the answer).
	NativeSidecarRefresh time.Duration `json:"nativeSidecarRefresh"`
	// NativeSidecarProbeNamespace is where auto dry-runs its probe pod on
	// API servers 1.28-1.32; empty: the webhook's own namespace (the
	// service account's), else "default".
	NativeSidecarProbeNamespace string `json:"nativeSidecarProbeNamespace,omitempty"`
}

// MinRequestBudget is the smallest requestBudgetBytes that still admits a
// body of maxRequestBytes: its charge (with the first read chunk) must fit
// into the three quarters of the budget that large bodies may use.
func MinRequestBudget(maxRequestBytes int64) int64 {
	charge := (maxRequestBytes + 1 + firstBodyChunk) * bodyCostFactor
	return charge*4/3 + 4
}

func strptr(s string) *string { return &s }

// DefaultDNSOptions are the options dnsguard renders unless configured
// otherwise: ndots:5 keeps ClusterFirst's behaviour for short names,
// timeout:2/attempts:3 retry a lost packet after 2 s instead of 5 s, and
// single-request-reopen makes glibc use a new socket (new conntrack entry)
// for the second query after a timeout.
func DefaultDNSOptions() []DNSOption {
	return []DNSOption{
		{Name: "ndots", Value: strptr("5")},
		{Name: "timeout", Value: strptr("2")},
		{Name: "attempts", Value: strptr("3")},
		{Name: "single-request-reopen"},
	}
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Listen:        DefaultListen,
		DNSService:    DefaultDNSService,
		ClusterDomain: DefaultClusterDomain,
		DefaultMode:   ModeDNSConfig,
		DNSOptions:    DefaultDNSOptions(),
		Sidecar: SidecarConfig{
			Image:     DefaultSidecarImage(),
			Fallback:  true,
			RunAsUser: 65532,
			// Measured (make sidecar-resources, docs/sidecar-resources.md):
			// in a real pod under a miss flood at the resolver's in-flight
			// cap, the container's memory cgroup peaked at 25.6 MiB (commit
			// 6e60b66), so a 64Mi limit: 2.5x that peak, 2x with the
			// executable's ~7 MiB of page cache on top when the pod is
			// charged for it. Half of it requested. Bursts of 200
			// concurrent cache misses were not throttled at 500m. Limits
			// for both, so a ResourceQuota on limits.cpu/limits.memory
			// admits the pod; ratios 10 (cpu) and 2 (memory) for
			// LimitRanges.
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("50m"),
					corev1.ResourceMemory: resource.MustParse("32Mi"),
				},
				Limits: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("500m"),
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				},
			},
		},
		LogLevel:             "info",
		MaxRequestBytes:      DefaultMaxRequestBytes,
		RequestBudgetBytes:   DefaultRequestBudgetBytes,
		BodyReadTimeout:      DefaultBodyReadTimeout,
		RecheckInterval:      DefaultRecheck,
		NamespaceDefaults:    true,
		ShutdownDelay:        DefaultShutdownDelay,
		ShutdownTimeout:      DefaultShutdownTimeout,
		NativeSidecars:       NativeSidecarsAuto,
		NativeSidecarRefresh: DefaultNativeSidecarRefresh,
	}
}

// ValidMode reports whether m is one of off, dnsconfig, sidecar.
func ValidMode(m string) bool {
	return m == ModeOff || m == ModeDNSConfig || m == ModeSidecar
}

// badSetting is the one form of a configuration error: the flag (if the
// setting has one), its --config key and the value.
func badSetting(flagName, key string, val any, why string) error {
	if flagName == "" {
		return fmt.Errorf("invalid %s=%v: %s", key, val, why)
	}
	return fmt.Errorf("invalid --%s=%v [%s]: %s", flagName, val, key, why)
}

// Normalize settles the values the configuration accepts in more than one
// spelling: a trailing dot on clusterDomain, and nodeLocal (existing implies
// enabled; an empty address is the default one). It is the one step that
// changes a loaded configuration; NewServer applies it to its own copy.
func (c *Config) Normalize() {
	c.ClusterDomain = strings.TrimSuffix(c.ClusterDomain, ".")
	c.NodeLocal.normalize()
}

// Validate checks every field and returns all problems at once, each naming
// the setting and the bad value. checkFiles also requires the TLS files to
// exist. It changes nothing: it checks the configuration as Normalize
// would leave it, so both spellings of a value are accepted.
func (cfg Config) Validate(checkFiles bool) error {
	c := &cfg
	c.Normalize()
	var errs []error
	bad := func(flagName, key string, val any, why string) {
		errs = append(errs, badSetting(flagName, key, val, why))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "listen", c.Listen, err.Error())
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics-listen", "metricsListen", c.MetricsListen, err.Error())
		} else if c.MetricsListen == c.Listen {
			bad("metrics-listen", "metricsListen", c.MetricsListen, "must differ from --listen")
		}
	}
	switch {
	case c.TLSCertFile == "":
		bad("tls-cert-file", "tlsCertFile", `""`, "required (the webhook serves HTTPS only)")
	case c.TLSKeyFile == "":
		bad("tls-key-file", "tlsKeyFile", `""`, "required (the webhook serves HTTPS only)")
	case checkFiles:
		for _, f := range []struct{ flag, key, path string }{{"tls-cert-file", "tlsCertFile", c.TLSCertFile}, {"tls-key-file", "tlsKeyFile", c.TLSKeyFile}} {
			if _, err := os.Stat(f.path); err != nil {
				bad(f.flag, f.key, f.path, err.Error())
			}
		}
	}
	if ns, name, ok := strings.Cut(c.TLSSecret, "/"); c.TLSSecret != "" && (!ok || ns == "" || name == "" || strings.Contains(name, "/")) {
		bad("tls-secret", "tlsSecret", c.TLSSecret, "want namespace/name")
	}
	if len(c.Nameservers) > maxNameservers {
		bad("nameservers", "nameservers", strings.Join(c.Nameservers, ","), fmt.Sprintf("at most %d (a pod may have only %d)", maxNameservers, maxNameservers))
	}
	for _, ns := range c.Nameservers {
		if net.ParseIP(ns) == nil {
			bad("nameservers", "nameservers", ns, "not an IP address")
		}
	}
	if len(c.Nameservers) == 0 {
		if ns, name, ok := strings.Cut(c.DNSService, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			bad("dns-service", "dnsService", c.DNSService, "want namespace/name")
		}
	}
	if msgs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(msgs) > 0 {
		bad("cluster-domain", "clusterDomain", c.ClusterDomain, strings.Join(msgs, "; "))
	}
	if !ValidMode(c.DefaultMode) {
		bad("default-mode", "defaultMode", c.DefaultMode, "want dnsconfig, sidecar or off")
	}
	seen := map[string]bool{}
	for _, o := range c.DNSOptions {
		if o.Name == "" || strings.ContainsAny(o.Name, " \t\n:") {
			bad("dns-options", "dnsOptions", strconv.Quote(o.Name), "not an option name")
		}
		if o.Value != nil && strings.ContainsAny(*o.Value, " \t\n") {
			bad("dns-options", "dnsOptions", o.Name+":"+strconv.Quote(*o.Value), "the value contains whitespace")
		}
		if seen[o.Name] {
			bad("dns-options", "dnsOptions", o.Name, "appears twice")
		}
		seen[o.Name] = true
	}
	if strings.TrimSpace(c.Sidecar.Image) == "" {
		bad("sidecar-image", "sidecar.image", strconv.Quote(c.Sidecar.Image), "empty")
	}
	switch c.Sidecar.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("", "sidecar.imagePullPolicy", c.Sidecar.ImagePullPolicy, "want Always, IfNotPresent or Never")
	}
	if err := validateResources(c.Sidecar.Resources); err != nil {
		errs = append(errs, err)
	}
	if c.Sidecar.RunAsUser < 0 {
		bad("", "sidecar.runAsUser", c.Sidecar.RunAsUser, "must be a non-root UID, or 0 to leave it to the platform")
	}
	if err := validatePullSecrets(c.Sidecar.ImagePullSecrets); err != nil {
		errs = append(errs, err)
	}
	if err := validateMetricsPort(c.Sidecar.MetricsPort); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		bad("log-level", "logLevel", c.LogLevel, "want debug, info, warn or error")
	}
	if c.MaxRequestBytes <= 0 {
		bad("max-request-bytes", "maxRequestBytes", c.MaxRequestBytes, "must be positive")
	}
	// A maximum-size body (read after a first chunk, both charged) must fit
	// into the part of the budget large bodies may use, three quarters, or
	// it could never be read.
	if need := MinRequestBudget(c.MaxRequestBytes); c.MaxRequestBytes > 0 && c.RequestBudgetBytes < need {
		bad("request-budget-bytes", "requestBudgetBytes", c.RequestBudgetBytes, fmt.Sprintf("must be at least %d for --max-request-bytes=%d, or no maximum-size review could ever be read", need, c.MaxRequestBytes))
	}
	positive := []struct {
		flag, key string
		d         time.Duration
	}{
		{"body-read-timeout", "bodyReadTimeout", c.BodyReadTimeout},
		{"recheck-interval", "recheckInterval", c.RecheckInterval},
		{"shutdown-timeout", "shutdownTimeout", c.ShutdownTimeout},
		{"native-sidecar-refresh", "nativeSidecarRefresh", c.NativeSidecarRefresh},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad(p.flag, p.key, p.d, "must be positive")
		}
	}
	switch c.NativeSidecars {
	case NativeSidecarsAuto, NativeSidecarsOn, NativeSidecarsOff:
	default:
		bad("native-sidecars", "nativeSidecars", strconv.Quote(c.NativeSidecars), "want auto, on or off")
	}
	if ns := c.NativeSidecarProbeNamespace; ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("native-sidecar-probe-namespace", "nativeSidecarProbeNamespace", ns, strings.Join(msgs, "; "))
		}
	}
	if c.ShutdownDelay < 0 {
		bad("shutdown-delay", "shutdownDelay", c.ShutdownDelay, "must not be negative")
	}
	for _, d := range c.ExtraSearchDomains {
		if msgs := validation.IsDNS1123Subdomain(strings.ToLower(strings.TrimSuffix(d, "."))); len(msgs) > 0 {
			bad("extra-search-domains", "extraSearchDomains", d, strings.Join(msgs, "; "))
		}
	}
	if n := len(clusterSearches("x", c.ClusterDomain)) + len(c.ExtraSearchDomains); n > maxSearches {
		bad("extra-search-domains", "extraSearchDomains", strings.Join(c.ExtraSearchDomains, ","), fmt.Sprintf("with the 3 cluster ones that is %d, more than a pod may have (%d)", n, maxSearches))
	}
	if err := c.NodeLocal.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
