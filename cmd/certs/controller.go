package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	buildprom "github.com/dnsguard/dnsguard/cmd/buildinfo/prom"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/dnsguard/dnsguard/certs"
)

func init() {
	subcommands["controller"] = subcommand{
		"keep the CA, the serving certificate and caBundle current (in Secrets or in a directory)",
		runController,
	}
}

// localHosts are the SANs of a certificate kept in a directory when no
// Service and no --hosts are named: a webhook on this machine.
const localHosts = "127.0.0.1,localhost,::1"

// onceTimeout bounds a --once run (API calls included).
const onceTimeout = 2 * time.Minute

// controllerOptions are the parsed flags of `certs controller`.
type controllerOptions struct {
	cfg           certs.ControllerConfig
	kubeconfig    string
	once          bool
	leaseName     string
	leaseDuration time.Duration
	metricsListen string
	logLevel      slog.Level
}

// parseControllerFlags parses and checks the flags; every error names the
// flag and the value, before anything is written or any API is called.
func parseControllerFlags(args []string) (*controllerOptions, error) {
	o := &controllerOptions{}
	c := &o.cfg
	fs := flag.NewFlagSet("certs controller", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: certs controller [flags]

Keeps a CA, a serving certificate signed by it and the trust bundle current:
renews the serving certificate after 2/3 of its life, rotates the CA after
2/3 of its life with the old CA kept in the bundle until it expires, and
serves a certificate from a new CA only after caBundle has held it for
--bundle-propagation.

Where the certificates live:
  --secret-name=S --ca-secret-name=C   in two Secrets (the chart's Deployment;
                                       leader-elected, driven by watches)
  --out-dir=DIR                        in DIR (tls.crt, tls.key, ca.crt; the CA
                                       in DIR/ca): a webhook outside a cluster
  both                                 Secrets, plus a copy of the serving
                                       certificate in DIR (URL mode)
With --webhook-config-name the bundle is also kept in that
MutatingWebhookConfiguration's caBundle.

  certs controller --once --out-dir=dev-certs        # make run
  certs controller --namespace=dnsguard --secret-name=dnsguard-tls \
    --ca-secret-name=dnsguard-ca --webhook-config-name=dnsguard --service-name=dnsguard

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG); needed only for Secrets or --webhook-config-name")
	fs.StringVar(&c.Namespace, "namespace", "", "namespace of the Secrets, the Lease and the webhook Service (default: the pod's namespace)")
	fs.StringVar(&c.SecretName, "secret-name", "", "serving Secret (kubernetes.io/tls: tls.crt, tls.key, ca.crt) the webhook reads")
	fs.StringVar(&c.CASecretName, "ca-secret-name", "", "CA Secret (ca.crt, ca.key, ca-previous.crt); readable by this controller only")
	fs.StringVar(&c.OutDir, "out-dir", "", "directory for tls.crt, tls.key and ca.crt (the store itself without Secrets, a copy with them)")
	fs.StringVar(&c.WebhookConfigName, "webhook-config-name", "", "MutatingWebhookConfiguration whose caBundle is kept in step; empty: none")
	fs.StringVar(&c.ServiceName, "service-name", "", "webhook Service; its DNS names become SANs")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain for the Service FQDN SAN")
	hosts := fs.String("hosts", "", "comma-separated further SANs (IPs or DNS names); with --out-dir alone and no --service-name: "+localHosts)
	fs.DurationVar(&c.Validity, "validity", certs.DefaultServingValidity, "lifetime of a serving certificate; renewed after 2/3 of it")
	fs.DurationVar(&c.CAValidity, "ca-validity", certs.DefaultCAValidity, "lifetime of a CA; rotated after 2/3 of it (must exceed --validity)")
	fs.DurationVar(&c.BundlePropagation, "bundle-propagation", 10*time.Second, "after a CA rotation, how long caBundle must hold the new CA before a leaf signed by it is served")
	fs.DurationVar(&c.Resync, "resync", 10*time.Minute, "longest time between two checks when no watch event comes (a safety net: changes are seen at once, renewals are scheduled)")
	fs.BoolVar(&o.once, "once", false, "reconcile once (create, renew or repair what is due) and exit; no leader election, no metrics")
	fs.StringVar(&o.leaseName, "lease-name", "", "Lease for leader election with Secrets (default: <ca-secret-name>-controller)")
	fs.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "leader election lease duration")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":8080", "HTTP address for /metrics, /healthz and /readyz; empty: none")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level=%q: want debug, info, warn or error", *logLevel)
	}
	secrets := c.SecretName != "" || c.CASecretName != ""
	switch {
	case secrets && (c.SecretName == "" || c.CASecretName == ""):
		return nil, fmt.Errorf("--secret-name=%q --ca-secret-name=%q: name both Secrets, or neither and use --out-dir", c.SecretName, c.CASecretName)
	case !secrets && c.OutDir == "":
		return nil, errors.New("no --secret-name/--ca-secret-name and no --out-dir: nowhere to keep the certificates")
	}
	c.Hosts = splitList(*hosts)
	if !secrets && c.ServiceName == "" && len(c.Hosts) == 0 {
		c.Hosts = splitList(localHosts)
	}
	if c.Namespace == "" && (secrets || c.ServiceName != "") {
		if c.Namespace = podNamespace(); c.Namespace == "" {
			return nil, errors.New("--namespace is required outside a pod")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"validity", c.Validity}, {"ca-validity", c.CAValidity}, {"bundle-propagation", c.BundlePropagation}, {"resync", c.Resync}} {
		if d.v <= 0 {
			return nil, fmt.Errorf("--%s=%s: must be positive", d.name, d.v)
		}
	}
	if o.leaseDuration < 3*time.Second {
		return nil, fmt.Errorf("--lease-duration=%s: want at least 3s", o.leaseDuration)
	}
	if o.leaseName == "" {
		o.leaseName = c.CASecretName + "-controller"
	}
	// The rest (hosts, validity against CA validity) is checked by
	// NewController, with the value in the message.
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// runController runs the certificate controller. With Secrets, replicas
// elect a leader through a Lease and only the leader writes; a --once run
// or a directory store writes without one (conflicts on the Secrets are
// caught by their resourceVersion).
func runController(args []string) error {
	o, err := parseControllerFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.Logger = log
	var client kubernetes.Interface
	if o.cfg.SecretName != "" || o.cfg.WebhookConfigName != "" {
		var err error
		if client, err = clientset(o.kubeconfig, "dnsguard-certs-controller"); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.once {
		ctrl, err := certs.NewController(client, o.cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, onceTimeout)
		defer cancel()
		res, err := ctrl.Reconcile(ctx)
		if err != nil {
			return err
		}
		log.Info("certificates current", "caRotated", res.CARotated, "leafIssued", res.LeafIssued, "caBundlePatched", res.BundlePatched,
			"leafNotAfter", res.Leaf.NotAfter.UTC().Format(time.RFC3339), "nextRenewal", res.Next.UTC().Format(time.RFC3339))
		return nil
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildprom.Register(reg, "certs")
	o.cfg.Metrics = certs.NewControllerMetrics(reg)
	ctrl, err := certs.NewController(client, o.cfg)
	if err != nil {
		return err
	}
	if o.metricsListen != "" {
		stopMetrics, err := serveMetrics(o.metricsListen, reg, log, ctrl.Trusted)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	if o.cfg.SecretName == "" {
		// A directory belongs to one process: nothing to elect.
		o.cfg.Metrics.Leader.Set(1)
		ctrl.Run(ctx)
		log.Info("stopped")
		return nil
	}
	return runLeaderElected(ctx, client, o, ctrl, log)
}

// readyzTimeout bounds /readyz's reads (the serving Secret and the webhook
// configuration) below the probe's 2 s timeout.
const readyzTimeout = 1500 * time.Millisecond

// serveMetrics serves /metrics, /healthz (the process lives) and /readyz,
// which fails while ready does: the chart's readiness probe, so that
// `helm install --wait` returns only once the API server trusts the
// webhook's certificate.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger, ready func(context.Context) error) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen=%s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	ok := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyzTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			log.Info("not ready", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() { hs.Close() }, nil
}

func runLeaderElected(ctx context.Context, client kubernetes.Interface, o *controllerOptions, ctrl *certs.Controller, log *slog.Logger) error {
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: o.leaseName, Namespace: o.cfg.Namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.leaseDuration,
		RenewDeadline:   o.leaseDuration * 2 / 3,
		RetryPeriod:     o.leaseDuration / 7,
		ReleaseOnCancel: true,
		Name:            o.leaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				o.cfg.Metrics.Leader.Set(1)
				log.Info("leading: reconciling certificates", "identity", id)
				ctrl.Run(ctx)
			},
			OnStoppedLeading: func() {
				o.cfg.Metrics.Leader.Set(0)
				close(lost)
			},
			OnNewLeader: func(identity string) {
				if identity != id {
					log.Info("another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx) // returns when ctx ends or the lease is lost
	<-lost
	if ctx.Err() == nil {
		// Lost the lease while running: exit so the pod restarts and
		// campaigns afresh with clean state (the controller-runtime way).
		return errors.New("lost the leader lease")
	}
	log.Info("stopped")
	return nil
}
