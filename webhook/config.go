package webhook

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
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

// Defaults for Config fields.
const (
	DefaultListen          = ":8443"
	DefaultClusterDomain   = "cluster.local"
	DefaultDNSService      = "kube-system/kube-dns"
	DefaultSidecarImage    = "dnsguard/resolver:latest"
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

// Config is the webhook's whole configuration: command-line flags and the
// --config YAML file map onto it (camelCase keys in YAML).
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
	BodyReadTimeout Duration `json:"bodyReadTimeout"`
	// RecheckInterval is how often the DNS Service is looked up again.
	RecheckInterval Duration `json:"recheckInterval"`
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
}

// MinRequestBudget is the smallest requestBudgetBytes that still admits a
// body of maxRequestBytes: its charge (with the first read chunk) must fit
// into the three quarters of the budget that large bodies may use.
func MinRequestBudget(maxRequestBytes int64) int64 {
	charge := (maxRequestBytes + 1 + firstBodyChunk) * bodyCostFactor
	return charge*4/3 + 4
}

// Duration is a time.Duration that reads "30s" style strings from YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.Duration.String() + `"`), nil
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
			Image:     DefaultSidecarImage,
			Fallback:  true,
			RunAsUser: 65532,
			// Measured (docs/sidecar-resources.md, hack/sidecar-resources.sh):
			// peak RSS under a miss flood up to 39.5 MiB, so a 96Mi limit
			// (2.4x) and half of it requested; bursts of 200 concurrent
			// cache misses were never throttled at 500m. Limits for both,
			// so a ResourceQuota on limits.cpu/limits.memory admits the
			// pod; ratios 10 (cpu) and 2 (memory) for LimitRanges.
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("50m"),
					corev1.ResourceMemory: resource.MustParse("48Mi"),
				},
				Limits: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("500m"),
					corev1.ResourceMemory: resource.MustParse("96Mi"),
				},
			},
		},
		LogLevel:           "info",
		MaxRequestBytes:    DefaultMaxRequestBytes,
		RequestBudgetBytes: DefaultRequestBudgetBytes,
		BodyReadTimeout:    Duration{DefaultBodyReadTimeout},
		RecheckInterval:    Duration{DefaultRecheck},
		NamespaceDefaults:  true,
	}
}

// LoadConfigFile reads a YAML configuration file onto cfg. Keys absent from
// the file keep cfg's values; unknown keys are errors so that a typo does not
// silently fall back to a default.
func LoadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// ValidMode reports whether m is one of off, dnsconfig, sidecar.
func ValidMode(m string) bool {
	return m == ModeOff || m == ModeDNSConfig || m == ModeSidecar
}

// Validate checks every field and returns all problems at once, each naming
// the bad value. checkFiles also requires the TLS files to exist.
func (c *Config) Validate(checkFiles bool) error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("metricsListen %q: %w", c.MetricsListen, err))
		} else if c.MetricsListen == c.Listen {
			errs = append(errs, fmt.Errorf("metricsListen %q: must differ from listen", c.MetricsListen))
		}
	}
	if c.TLSCertFile == "" || c.TLSKeyFile == "" {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file are required (the webhook serves HTTPS only)"))
	} else if checkFiles {
		for _, f := range []string{c.TLSCertFile, c.TLSKeyFile} {
			if _, err := os.Stat(f); err != nil {
				errs = append(errs, fmt.Errorf("TLS file %q: %w", f, err))
			}
		}
	}
	if len(c.Nameservers) > maxNameservers {
		errs = append(errs, fmt.Errorf("nameservers %v: at most %d (a pod may have only %d)", c.Nameservers, maxNameservers, maxNameservers))
	}
	for _, ns := range c.Nameservers {
		if net.ParseIP(ns) == nil {
			errs = append(errs, fmt.Errorf("nameserver %q is not an IP address", ns))
		}
	}
	if len(c.Nameservers) == 0 {
		if ns, name, ok := strings.Cut(c.DNSService, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("dns-service %q: want namespace/name", c.DNSService))
		}
	}
	c.ClusterDomain = strings.TrimSuffix(c.ClusterDomain, ".")
	if msgs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("cluster-domain %q: %s", c.ClusterDomain, strings.Join(msgs, "; ")))
	}
	if !ValidMode(c.DefaultMode) {
		errs = append(errs, fmt.Errorf("default-mode %q: want dnsconfig, sidecar or off", c.DefaultMode))
	}
	seen := map[string]bool{}
	for _, o := range c.DNSOptions {
		if o.Name == "" || strings.ContainsAny(o.Name, " \t\n:") {
			errs = append(errs, fmt.Errorf("dns option name %q is invalid", o.Name))
		}
		if o.Value != nil && strings.ContainsAny(*o.Value, " \t\n") {
			errs = append(errs, fmt.Errorf("dns option %s value %q contains whitespace", o.Name, *o.Value))
		}
		if seen[o.Name] {
			errs = append(errs, fmt.Errorf("dns option %q appears twice", o.Name))
		}
		seen[o.Name] = true
	}
	if strings.TrimSpace(c.Sidecar.Image) == "" {
		errs = append(errs, errors.New("sidecar image is empty"))
	}
	switch c.Sidecar.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("sidecar imagePullPolicy %q: want Always, IfNotPresent or Never", c.Sidecar.ImagePullPolicy))
	}
	if err := validateResources(c.Sidecar.Resources); err != nil {
		errs = append(errs, err)
	}
	if c.Sidecar.RunAsUser < 0 {
		errs = append(errs, fmt.Errorf("sidecar runAsUser %d: must be a non-root UID, or 0 to leave it to the platform", c.Sidecar.RunAsUser))
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
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("maxRequestBytes %d: must be positive", c.MaxRequestBytes))
	}
	// A maximum-size body (read after a first chunk, both charged) must fit
	// into the part of the budget large bodies may use, three quarters, or
	// it could never be read.
	if need := MinRequestBudget(c.MaxRequestBytes); c.MaxRequestBytes > 0 && c.RequestBudgetBytes < need {
		errs = append(errs, fmt.Errorf("requestBudgetBytes %d: must be at least %d for maxRequestBytes %d, or no maximum-size review could ever be read", c.RequestBudgetBytes, need, c.MaxRequestBytes))
	}
	if c.BodyReadTimeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("bodyReadTimeout %s: must be positive", c.BodyReadTimeout.Duration))
	}
	if c.RecheckInterval.Duration <= 0 {
		errs = append(errs, fmt.Errorf("recheck interval %s: must be positive", c.RecheckInterval.Duration))
	}
	for _, d := range c.ExtraSearchDomains {
		if msgs := validation.IsDNS1123Subdomain(strings.ToLower(strings.TrimSuffix(d, "."))); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("extra search domain %q: %s", d, strings.Join(msgs, "; ")))
		}
	}
	if n := len(clusterSearches("x", c.ClusterDomain)) + len(c.ExtraSearchDomains); n > maxSearches {
		errs = append(errs, fmt.Errorf("extra search domains %v: with the 3 cluster ones that is %d, more than a pod may have (%d)", c.ExtraSearchDomains, n, maxSearches))
	}
	if err := c.NodeLocal.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
