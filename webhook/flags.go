package webhook

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// RegisterFlags binds the settings of c that have a flag to fs; the
// default shown is c's current value. Each usage ends with the setting's
// --config key in brackets.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTPS listen address [listen]")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "plain-HTTP address for /metrics, /explain, /healthz and /readyz (e.g. :8080); the HTTPS listener then serves only /mutate, /healthz and /readyz. Empty: everything on --listen [metricsListen]")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "serving certificate (PEM), reloaded when it changes on disk [tlsCertFile]")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "serving key (PEM), reloaded when it changes on disk [tlsKeyFile]")
	fs.StringVar(&c.TLSSecret, "tls-secret", c.TLSSecret, "namespace/name of the serving Secret (tls.crt, tls.key) to watch through the API, so a renewed certificate is served within a second instead of after the kubelet's Secret-volume refresh; the files stay the fallback; empty: files only [tlsSecret]")
	fs.Var(&commaList{v: &c.Nameservers}, "nameservers", "cluster DNS IPs written into pods, comma separated, at most 3; empty: discover the ClusterIP of --dns-service [nameservers]")
	fs.StringVar(&c.DNSService, "dns-service", c.DNSService, "namespace/name of the cluster DNS Service, used when --nameservers is empty [dnsService]")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig for discovery and namespace defaults; empty: in-cluster configuration [kubeconfig]")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "cluster DNS domain [clusterDomain]")
	fs.StringVar(&c.DefaultMode, "default-mode", c.DefaultMode, "mode when neither pod nor namespace choose: dnsconfig, sidecar or off [defaultMode]")
	fs.Var(dnsOptionsFlag{&c.DNSOptions}, "dns-options", "resolv.conf options for patched pods, comma separated name[:value], in order [dnsOptions]")
	fs.StringVar(&c.Sidecar.Image, "sidecar-image", c.Sidecar.Image, "resolver sidecar image (binary at /resolver) [sidecar.image]")
	fs.Var(&commaList{v: &c.Sidecar.ImagePullSecrets}, "sidecar-image-pull-secrets", "Secret names, comma separated, added to spec.imagePullSecrets of pods that get the sidecar (unless already listed), for a resolver image in a private registry [sidecar.imagePullSecrets]")
	fs.BoolVar(&c.Sidecar.Fallback, "sidecar-fallback", c.Sidecar.Fallback, "sidecar mode: keep the cluster DNS as second nameserver after 127.0.0.1, so pods resolve if the sidecar dies; musl (Alpine) queries all nameservers at once, so this doubles the queries musl pods send to the cluster DNS [sidecar.fallback]")
	fs.Var(portFlag{&c.Sidecar.MetricsPort}, "sidecar-metrics-port", "sidecar mode: the resolver also serves /metrics on the pod IP at this TCP port (--metrics-listen=:PORT), declared as container port \"dg-metrics\" for a PodMonitor; not 53 or 8053; pods declaring it get the sidecar without metrics; 0: off [sidecar.metricsPort]")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error [logLevel]")
	fs.Int64Var(&c.MaxRequestBytes, "max-request-bytes", c.MaxRequestBytes, "largest request body accepted; larger gets 413 [maxRequestBytes]")
	fs.Int64Var(&c.RequestBudgetBytes, "request-budget-bytes", c.RequestBudgetBytes, "bytes all request bodies being read or handled may pin at once, charged at 3x their size; over it a request gets 429 with Retry-After (the API server retries). A quarter is kept for bodies up to 64 KiB, so ordinary pods are served while big ones are shed. The default keeps the process under 128 MiB with no memory limit set; at least 4x --max-request-bytes [requestBudgetBytes]")
	fs.DurationVar(&c.BodyReadTimeout, "body-read-timeout", c.BodyReadTimeout, "longest time to read one request body (slow clients are cut off) [bodyReadTimeout]")
	fs.DurationVar(&c.RecheckInterval, "recheck-interval", c.RecheckInterval, "how often the DNS Service is looked up again [recheckInterval]")
	fs.BoolVar(&c.NamespaceDefaults, "namespace-defaults", c.NamespaceDefaults, "read the dnsguard.io/default-mode Namespace annotation through an informer when the API server is reachable [namespaceDefaults]")
	fs.Var(nodeLocalAddress{&c.NodeLocal}, "node-local-address", "IP of the node-local cache (e.g. 169.254.20.10), or one IPv4 and one IPv6 address comma separated for IPv6 and dual-stack clusters (the one of the cluster DNS's primary family is used): dnsconfig pods get it as first nameserver with the cluster DNS as fallback, sidecars as first upstream; empty: off (it sets nodeLocal.enabled too) [nodeLocal.address]")
	fs.BoolVar(&c.NodeLocal.Existing, "node-local-existing", c.NodeLocal.Existing, "the node-local cache at --node-local-address (default 169.254.20.10) is NodeLocal DNSCache already installed, the kubelets' --cluster-dns: pods keep using it first instead of being sent to the discovered kube-dns Service IP [nodeLocal.existing]")
	fs.Var(&commaList{v: &c.ExtraSearchDomains}, "extra-search-domains", "your nodes' search domains, comma separated, appended after the cluster ones like ClusterFirst does (see the search line of /etc/resolv.conf on a node, or of the file the kubelet's --resolv-conf names); the webhook cannot read them itself [extraSearchDomains]")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", c.ShutdownDelay, "on SIGTERM: fail /readyz at once but keep serving new and in-flight requests this long, so API servers and kube-proxy stop sending here before the listener closes (the API server does not retry on another replica); keep terminationGracePeriodSeconds above delay+timeout [shutdownDelay]")
	fs.StringVar(&c.NativeSidecars, "native-sidecars", c.NativeSidecars, "may sidecar mode inject a native sidecar (init container with restartPolicy Always)? auto: ask the API server at start and every --native-sidecar-refresh (version; on 1.28-1.32 a dry-run probe pod, needs create pods in the probe namespace; below 1.32 also every node's kubelet version, needs list nodes); on: assume yes (API servers with SidecarContainers off then reject such pods); off: never. Where not available, sidecar-mode pods get dnsconfig mode with a warning and dnsguard_webhook_sidecar_fallbacks_total [nativeSidecars]")
	fs.DurationVar(&c.NativeSidecarRefresh, "native-sidecar-refresh", c.NativeSidecarRefresh, "how often --native-sidecars=auto asks again (every 30s while the answer is unknown) [nativeSidecarRefresh]")
	fs.StringVar(&c.NativeSidecarProbeNamespace, "native-sidecar-probe-namespace", c.NativeSidecarProbeNamespace, "namespace of the dry-run probe pod of --native-sidecars=auto; empty: the webhook's own (its service account's), else default [nativeSidecarProbeNamespace]")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "after --shutdown-delay: how long requests still in flight may take before connections are closed [shutdownTimeout]")
}

// commaList is a comma separated list flag; it replaces the list from the
// defaults or the --config file.
type commaList struct{ v *[]string }

func (l *commaList) String() string {
	if l == nil || l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l *commaList) Set(s string) error {
	*l.v = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// dnsOptionsFlag reads "ndots:5,edns0" into DNSOptions, replacing them.
type dnsOptionsFlag struct{ v *[]DNSOption }

func (f dnsOptionsFlag) String() string {
	if f.v == nil {
		return ""
	}
	var parts []string
	for _, o := range *f.v {
		if o.Value != nil {
			parts = append(parts, o.Name+":"+*o.Value)
		} else {
			parts = append(parts, o.Name)
		}
	}
	return strings.Join(parts, ",")
}

func (f dnsOptionsFlag) Set(s string) error {
	var out []DNSOption
	for _, p := range splitList(s) {
		name, value, hasValue := strings.Cut(p, ":")
		if name == "" {
			return fmt.Errorf("empty option name in %q", p)
		}
		o := DNSOption{Name: name}
		if hasValue {
			o.Value = &value
		}
		out = append(out, o)
	}
	*f.v = out
	return nil
}

// portFlag is a TCP port, 0..65535, checked before the conversion to int32
// could wrap a larger number into range.
type portFlag struct{ v *int32 }

func (f portFlag) String() string {
	if f.v == nil {
		return "0"
	}
	return strconv.Itoa(int(*f.v))
}

func (f portFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return fmt.Errorf("want 1-65535, or 0 for off")
	}
	*f.v = int32(n)
	return nil
}

// nodeLocalAddress sets the node cache address; a non-empty one also
// enables it, an empty one disables it.
type nodeLocalAddress struct{ v *NodeLocalConfig }

func (f nodeLocalAddress) String() string {
	if f.v == nil {
		return ""
	}
	return f.v.Address
}

func (f nodeLocalAddress) Set(s string) error {
	f.v.Enabled, f.v.Address = s != "", s
	return nil
}
