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
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	buildprom "github.com/dnsguard/dnsguard/cmd/buildinfo/prom"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dnsguard/dnsguard/cmd/config"
	"github.com/dnsguard/dnsguard/webhook"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], true, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook: configuration error:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "webhook: %v\n", err)
		os.Exit(1)
	}
}

// parseConfig loads the settings (defaults, then the --config file, then
// the flags given), normalizes and validates them; checkFiles also
// requires the TLS files to exist.
func parseConfig(args []string, checkFiles bool, stderr io.Writer) (webhook.Config, error) {
	cfg, err := config.Load("webhook", args, stderr, webhook.DefaultConfig, (*webhook.Config).RegisterFlags, usage)
	if err != nil {
		return cfg, err
	}
	cfg.Normalize()
	return cfg, cfg.Validate(checkFiles)
}

func usage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `Usage: webhook [flags]

dnsguard's mutating admission webhook. Serves HTTPS only:
  POST /mutate   AdmissionReview admission.k8s.io/v1 (Pod CREATE is patched)
  POST /explain  a Pod (JSON; ?namespace=NS): mode, reason, patch, resolv.conf
  GET  /healthz /readyz /metrics
  (with --metrics-listen, /metrics and /explain move there, plain HTTP)

Pod annotation dnsguard.io/mode=off|dnsconfig|sidecar chooses the mode; else
the Namespace annotation dnsguard.io/default-mode; else --default-mode.

Settings come from the defaults, then the --config YAML file (the key of
each flag in brackets; sidecar.resources, sidecar.runAsUser and
sidecar.imagePullPolicy are file only), then the flags given, which win.

`)
	fs.PrintDefaults()
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

// kubeClient returns a client from --kubeconfig or the in-cluster config,
// and one with a request timeout for calls that take no context (the
// server version); the first serves watches, which a timeout would cut.
func kubeClient(kubeconfig string) (client, timed kubernetes.Interface, err error) {
	var rc *rest.Config
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = "dnsguard-webhook"
	// Discovery and one informer: keep the load on the API server small.
	rc.QPS, rc.Burst = 5, 10
	if client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	rt := rest.CopyConfig(rc)
	rt.Timeout = 15 * time.Second
	if timed, err = kubernetes.NewForConfig(rt); err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, timed, nil
}

func run(cfg webhook.Config) error {
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var client, timed kubernetes.Interface
	var err error
	needClient := len(cfg.Nameservers) == 0 || cfg.NamespaceDefaults || cfg.TLSSecret != "" || cfg.NativeSidecars == webhook.NativeSidecarsAuto
	if needClient {
		client, timed, err = kubeClient(cfg.Kubeconfig)
		if err != nil {
			if len(cfg.Nameservers) == 0 {
				return fmt.Errorf("--nameservers is empty, so the cluster DNS must be discovered, but: %w", err)
			}
			log.Info("no API server access; namespace default modes disabled (the flag default applies), native sidecar support unknown (sidecar mode gives dnsconfig mode unless --native-sidecars=on)", "reason", err.Error())
			client = nil
		}
	}

	opts := webhook.Options{Logger: log, Registry: prometheus.NewRegistry()}
	opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildprom.Register(opts.Registry, "webhook")
	if len(cfg.Nameservers) == 0 {
		d, err := webhook.NewDNSDiscovery(client, cfg.DNSService, cfg.RecheckInterval, log)
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

	if client != nil && cfg.NativeSidecars == webhook.NativeSidecarsAuto {
		d := webhook.NewNativeSidecarDetector(timed, webhook.ProbeNamespace(cfg.NativeSidecarProbeNamespace), cfg.Sidecar.Image, cfg.NativeSidecarRefresh, log)
		d.Start(ctx)
		opts.NativeSidecars = d
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
	if cfg.TLSSecret != "" {
		if client == nil {
			log.Warn("no API server access; the serving secret is not watched (renewals arrive through the mounted files)", "secret", cfg.TLSSecret)
		} else {
			ns, name, _ := strings.Cut(cfg.TLSSecret, "/")
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
	if err := webhook.ServeDrained(ctx, hs, ln, gate, webhook.Drain{Delay: cfg.ShutdownDelay, Timeout: cfg.ShutdownTimeout}, log); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
