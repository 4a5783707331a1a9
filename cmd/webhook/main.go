// Command webhook runs dnsguard's mutating admission webhook over HTTPS.
//
//	webhook --tls-cert-file=tls.crt --tls-key-file=tls.key --nameservers=10.96.0.10
//
// Flags override the --config YAML file, which overrides the defaults. With
// --nameservers empty, the cluster DNS address is discovered from the
// --dns-service Service through the API server (in-cluster configuration or
// --kubeconfig), and /readyz fails until it is known.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dnsguard/dnsguard/webhook"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "webhook: %v\n", err)
		os.Exit(1)
	}
}

// parseConfig turns the command line (and the --config file it names) into
// a validated Config.
func parseConfig(args []string, checkFiles bool) (webhook.Config, error) {
	cfg, _, err := parseFlags(args, checkFiles)
	return cfg, err
}

// procOptions are settings of the process rather than of admission; they
// are flags only (the chart derives terminationGracePeriodSeconds from them).
type procOptions struct {
	drain webhook.Drain
	// tlsSecret is namespace/name of the serving Secret to watch, or "".
	tlsSecret string
}

// parseFlags is parseConfig plus the process options.
func parseFlags(args []string, checkFiles bool) (webhook.Config, procOptions, error) {
	var po procOptions
	def := webhook.DefaultConfig()
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: webhook [flags]

dnsguard's mutating admission webhook. Serves HTTPS only:
  POST /mutate   AdmissionReview admission.k8s.io/v1 (Pod CREATE is patched)
  POST /explain  a Pod (JSON; ?namespace=NS): mode, reason, patch, resolv.conf
  GET  /healthz /readyz /metrics
  (with --metrics-listen, /metrics and /explain move there, plain HTTP)

Pod annotation dnsguard.io/mode=off|dnsconfig|sidecar chooses the mode; else
the Namespace annotation dnsguard.io/default-mode; else --default-mode.

Flags (each also settable in the --config YAML file under the camelCase name
shown in brackets; flags given on the command line win over the file):
`)
		fs.PrintDefaults()
	}
	configFile := fs.String("config", "", "YAML configuration file (strict: unknown keys are errors)")
	listen := fs.String("listen", def.Listen, "HTTPS listen address [listen]")
	metricsListen := fs.String("metrics-listen", def.MetricsListen, "plain-HTTP address for /metrics, /explain, /healthz and /readyz (e.g. :8080); the HTTPS listener then serves only /mutate, /healthz and /readyz. Empty: everything on --listen [metricsListen]")
	certFile := fs.String("tls-cert-file", "", "serving certificate (PEM), reloaded when it changes on disk [tlsCertFile]")
	keyFile := fs.String("tls-key-file", "", "serving key (PEM), reloaded when it changes on disk [tlsKeyFile]")
	nameservers := fs.String("nameservers", "", "cluster DNS IPs written into pods, comma separated, at most 3; empty: discover the ClusterIP of --dns-service [nameservers]")
	dnsService := fs.String("dns-service", def.DNSService, "namespace/name of the cluster DNS Service, used when --nameservers is empty [dnsService]")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for discovery and namespace defaults; empty: in-cluster configuration [kubeconfig]")
	domain := fs.String("cluster-domain", def.ClusterDomain, "cluster DNS domain [clusterDomain]")
	mode := fs.String("default-mode", def.DefaultMode, "mode when neither pod nor namespace choose: dnsconfig, sidecar or off [defaultMode]")
	dnsOptions := fs.String("dns-options", "", "resolv.conf options for patched pods, comma separated name[:value], in order (default ndots:5,timeout:2,attempts:3,single-request-reopen) [dnsOptions]")
	image := fs.String("sidecar-image", def.Sidecar.Image, "resolver sidecar image (binary at /resolver) [sidecar.image]")
	pullSecrets := fs.String("sidecar-image-pull-secrets", "", "Secret names, comma separated, added to spec.imagePullSecrets of pods that get the sidecar (unless already listed), for a resolver image in a private registry [sidecar.imagePullSecrets]")
	fallback := fs.Bool("sidecar-fallback", def.Sidecar.Fallback, "sidecar mode: keep the cluster DNS as second nameserver after 127.0.0.1, so pods resolve if the sidecar dies; musl (Alpine) queries all nameservers at once, so this doubles the queries musl pods send to the cluster DNS [sidecar.fallback]")
	metricsPort := fs.Int("sidecar-metrics-port", int(def.Sidecar.MetricsPort), "sidecar mode: the resolver also serves /metrics on the pod IP at this TCP port (--metrics-listen=:PORT), declared as container port \"dg-metrics\" for a PodMonitor; not 53 or 8053; pods declaring it get the sidecar without metrics; 0: off [sidecar.metricsPort]")
	logLevel := fs.String("log-level", def.LogLevel, "debug, info, warn or error [logLevel]")
	maxBytes := fs.Int64("max-request-bytes", def.MaxRequestBytes, "largest request body accepted; larger gets 413 [maxRequestBytes]")
	budget := fs.Int64("request-budget-bytes", def.RequestBudgetBytes, "bytes all request bodies being read or handled may pin at once, charged at 3x their size; over it a request gets 429 with Retry-After (the API server retries). A quarter is kept for bodies up to 64 KiB, so ordinary pods are served while big ones are shed. The default keeps the process under 128 MiB with no memory limit set; at least 4x --max-request-bytes [requestBudgetBytes]")
	bodyTimeout := fs.Duration("body-read-timeout", def.BodyReadTimeout.Duration, "longest time to read one request body (slow clients are cut off) [bodyReadTimeout]")
	recheck := fs.Duration("recheck-interval", def.RecheckInterval.Duration, "how often the DNS Service is looked up again [recheckInterval]")
	nodeLocal := fs.String("node-local-address", "", "IP of the node-local cache (e.g. 169.254.20.10): dnsconfig pods get it as first nameserver with the cluster DNS as fallback, sidecars as first upstream; empty: off [nodeLocal.enabled, nodeLocal.address]")
	extraSearch := fs.String("extra-search-domains", "", "your nodes' search domains, comma separated, appended after the cluster ones like ClusterFirst does (see the search line of /etc/resolv.conf on a node, or of the file the kubelet's --resolv-conf names); the webhook cannot read them itself [extraSearchDomains]")
	nodeLocalExisting := fs.Bool("node-local-existing", false, "the node-local cache at --node-local-address (default 169.254.20.10) is NodeLocal DNSCache already installed, the kubelets' --cluster-dns: pods keep using it first instead of being sent to the discovered kube-dns Service IP [nodeLocal.existing]")
	nsDefaults := fs.Bool("namespace-defaults", def.NamespaceDefaults, "read the dnsguard.io/default-mode Namespace annotation through an informer when the API server is reachable [namespaceDefaults]")
	fs.DurationVar(&po.drain.Delay, "shutdown-delay", webhook.DefaultShutdownDelay, "on SIGTERM: fail /readyz at once but keep serving new and in-flight requests this long, so API servers and kube-proxy stop sending here before the listener closes (the API server does not retry on another replica); keep terminationGracePeriodSeconds above delay+timeout")
	fs.StringVar(&po.tlsSecret, "tls-secret", "", "namespace/name of the serving Secret (tls.crt, tls.key) to watch through the API, so a renewed certificate is served within a second instead of after the kubelet's Secret-volume refresh; the files stay the fallback; empty: files only")
	fs.DurationVar(&po.drain.Timeout, "shutdown-timeout", webhook.DefaultShutdownTimeout, "after --shutdown-delay: how long requests still in flight may take before connections are closed")
	if err := fs.Parse(args); err != nil {
		return webhook.Config{}, po, err
	}
	if fs.NArg() > 0 {
		return webhook.Config{}, po, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if po.tlsSecret != "" {
		if ns, name, ok := strings.Cut(po.tlsSecret, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return webhook.Config{}, po, fmt.Errorf("--tls-secret=%q: want namespace/name", po.tlsSecret)
		}
	}
	if po.drain.Delay < 0 || po.drain.Timeout <= 0 {
		return webhook.Config{}, po, fmt.Errorf("--shutdown-delay=%s must be >= 0 and --shutdown-timeout=%s > 0", po.drain.Delay, po.drain.Timeout)
	}
	cfg := def
	if *configFile != "" {
		if err := webhook.LoadConfigFile(*configFile, &cfg); err != nil {
			return webhook.Config{}, po, err
		}
	}
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "metrics-listen":
			cfg.MetricsListen = *metricsListen
		case "tls-cert-file":
			cfg.TLSCertFile = *certFile
		case "tls-key-file":
			cfg.TLSKeyFile = *keyFile
		case "nameservers":
			cfg.Nameservers = splitList(*nameservers)
		case "dns-service":
			cfg.DNSService = *dnsService
		case "kubeconfig":
			cfg.Kubeconfig = *kubeconfig
		case "cluster-domain":
			cfg.ClusterDomain = *domain
		case "default-mode":
			cfg.DefaultMode = *mode
		case "dns-options":
			opts, err := parseOptions(*dnsOptions)
			if err != nil {
				errs = append(errs, err)
			}
			cfg.DNSOptions = opts
		case "sidecar-image":
			cfg.Sidecar.Image = *image
		case "sidecar-image-pull-secrets":
			cfg.Sidecar.ImagePullSecrets = splitList(*pullSecrets)
		case "sidecar-fallback":
			cfg.Sidecar.Fallback = *fallback
		case "sidecar-metrics-port":
			if *metricsPort < 0 || *metricsPort > 65535 {
				// Checked before the int32 conversion could wrap it into range.
				errs = append(errs, fmt.Errorf("--sidecar-metrics-port=%d: want 1-65535, or 0 for off", *metricsPort))
				return
			}
			cfg.Sidecar.MetricsPort = int32(*metricsPort)
		case "log-level":
			cfg.LogLevel = *logLevel
		case "max-request-bytes":
			cfg.MaxRequestBytes = *maxBytes
		case "request-budget-bytes":
			cfg.RequestBudgetBytes = *budget
		case "body-read-timeout":
			cfg.BodyReadTimeout.Duration = *bodyTimeout
		case "recheck-interval":
			cfg.RecheckInterval.Duration = *recheck
		case "namespace-defaults":
			cfg.NamespaceDefaults = *nsDefaults
		case "node-local-address":
			cfg.NodeLocal.Enabled, cfg.NodeLocal.Address = *nodeLocal != "", *nodeLocal
		case "extra-search-domains":
			cfg.ExtraSearchDomains = splitList(*extraSearch)
		}
	})
	// After the loop: --node-local-existing implies a node cache even
	// without --node-local-address (then at the default address).
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "node-local-existing" {
			cfg.NodeLocal.Existing = *nodeLocalExisting
			if *nodeLocalExisting {
				cfg.NodeLocal.Enabled = true
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return cfg, po, err
	}
	if err := cfg.Validate(checkFiles); err != nil {
		return cfg, po, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, po, nil
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

func parseOptions(s string) ([]webhook.DNSOption, error) {
	var out []webhook.DNSOption
	for _, p := range splitList(s) {
		name, value, hasValue := strings.Cut(p, ":")
		if name == "" {
			return nil, fmt.Errorf("dns-options: empty option name in %q", p)
		}
		o := webhook.DNSOption{Name: name}
		if hasValue {
			o.Value = &value
		}
		out = append(out, o)
	}
	return out, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// kubeClient returns a client from --kubeconfig or the in-cluster config.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = "dnsguard-webhook"
	// Discovery and one informer: keep the load on the API server small.
	rc.QPS, rc.Burst = 5, 10
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

func run(args []string) error {
	cfg, po, err := parseFlags(args, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var client kubernetes.Interface
	needClient := len(cfg.Nameservers) == 0 || cfg.NamespaceDefaults || po.tlsSecret != ""
	if needClient {
		client, err = kubeClient(cfg.Kubeconfig)
		if err != nil {
			if len(cfg.Nameservers) == 0 {
				return fmt.Errorf("--nameservers is empty, so the cluster DNS must be discovered, but: %w", err)
			}
			log.Info("no API server access; namespace default modes disabled (the flag default applies)", "reason", err.Error())
			client = nil
		}
	}

	opts := webhook.Options{Logger: log, Registry: prometheus.NewRegistry()}
	opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if len(cfg.Nameservers) == 0 {
		d, err := webhook.NewDNSDiscovery(client, cfg.DNSService, cfg.RecheckInterval.Duration, log)
		if err != nil {
			return err
		}
		go d.Run(ctx)
		opts.Nameservers = d
	}
	if client != nil && cfg.NamespaceDefaults {
		nm := webhook.NewNamespaceModes(client, 10*time.Minute, log)
		go func() {
			if !nm.Start(ctx) && ctx.Err() == nil {
				log.Warn("namespace informer did not sync; the flag default applies")
			}
		}()
		opts.Namespaces = nm
	}

	srv := webhook.NewServer(cfg, opts)
	certs, err := webhook.NewCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return err
	}
	certs.Observe = func(ok bool) {
		r := "ok"
		if !ok {
			r = "error"
		}
		srv.Metrics().CertReloads.WithLabelValues(r).Inc()
	}
	opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "dnsguard", Subsystem: "webhook", Name: "serving_cert_expiry_timestamp_seconds",
		Help: "NotAfter (unix seconds) of the TLS certificate this replica serves now.",
	}, func() float64 { return float64(certs.NotAfter().Unix()) }))
	if po.tlsSecret != "" {
		if client == nil {
			log.Warn("no API server access; the serving secret is not watched (renewals arrive through the mounted files)", "secret", po.tlsSecret)
		} else {
			ns, name, _ := strings.Cut(po.tlsSecret, "/")
			webhook.WatchServingSecret(ctx, client, ns, name, certs, log)
		}
	}
	gate := webhook.NewReadinessGate(srv)
	hs := webhook.NewHTTPServer(gate, certs, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if ops := srv.OpsHandler(); ops != nil {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", cfg.MetricsListen, err)
		}
		log.Info("metrics serving (HTTP)", "metricsListen", mln.Addr().String())
		go func() {
			if err := webhook.ServePlain(ctx, webhook.NewOpsServer(ops, log), mln, 5*time.Second); err != nil {
				log.Error("metrics listener stopped", "err", err)
			}
		}()
	}
	log.Info("webhook serving", "listen", ln.Addr().String(), "nameservers", cfg.Nameservers, "dnsService", cfg.DNSService,
		"clusterDomain", cfg.ClusterDomain, "defaultMode", cfg.DefaultMode, "sidecarImage", cfg.Sidecar.Image, "sidecarFallback", cfg.Sidecar.Fallback)
	if err := webhook.ServeDrained(ctx, hs, ln, gate, po.drain, log); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
