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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/dnsguard/dnsguard/certs"
)

func init() {
	subcommands["controller"] = subcommand{
		"keep the serving certificate, the CA and caBundle current (leader-elected Deployment)",
		runController,
	}
}

// runController runs the certificate controller: it creates the CA and
// serving Secrets on first start, renews the serving certificate at 2/3 of
// its life, rotates the CA with an overlap bundle, and keeps caBundle of the
// webhook configuration in step. Replicas elect a leader through a Lease;
// only the leader writes.
func runController(args []string) error {
	fs := flag.NewFlagSet("certs controller", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG)")
	namespace := fs.String("namespace", "", "namespace of the Secrets, the Lease and the webhook Service (default: the pod's namespace)")
	secretName := fs.String("secret-name", "", "serving Secret (kubernetes.io/tls: tls.crt, tls.key, ca.crt) the webhook reads (required)")
	caSecretName := fs.String("ca-secret-name", "", "CA Secret (ca.crt, ca.key); readable by this controller only (required)")
	webhookConfig := fs.String("webhook-config-name", "", "MutatingWebhookConfiguration whose caBundle is kept in step; empty: none")
	serviceName := fs.String("service-name", "", "webhook Service; its DNS names become SANs")
	clusterDomain := fs.String("cluster-domain", "cluster.local", "cluster DNS domain for the Service FQDN SAN")
	extraHosts := fs.String("extra-hosts", "", "comma-separated extra SANs (IPs or DNS names)")
	validity := fs.Duration("validity", certs.DefaultServingValidity, "lifetime of a serving certificate; renewed after 2/3 of it")
	caValidity := fs.Duration("ca-validity", certs.DefaultCAValidity, "lifetime of a CA; rotated after 2/3 of it (must exceed --validity)")
	propagation := fs.Duration("bundle-propagation", 10*time.Second, "after a CA rotation, how long caBundle must hold the new CA before a leaf signed by it is served")
	resync := fs.Duration("resync", time.Minute, "longest time between two checks (repairs an edited caBundle or a deleted Secret)")
	leaseName := fs.String("lease-name", "", "Lease for leader election (default: <ca-secret-name>-controller)")
	leaseDuration := fs.Duration("lease-duration", 15*time.Second, "leader election lease duration")
	metricsListen := fs.String("metrics-listen", ":8080", "HTTP address for /metrics, /healthz and /readyz; empty: none")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ns := *namespace
	if ns == "" {
		ns = podNamespace()
	}
	if ns == "" {
		return fmt.Errorf("--namespace is required outside a pod")
	}
	if *secretName == "" || *caSecretName == "" {
		return fmt.Errorf("--secret-name and --ca-secret-name are required")
	}
	if *leaseName == "" {
		*leaseName = *caSecretName + "-controller"
	}
	if *leaseDuration < 3*time.Second {
		return fmt.Errorf("--lease-duration=%s: want at least 3s", *leaseDuration)
	}
	restCfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "dnsguard-certs-controller"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := certs.NewControllerMetrics(reg)
	ctrl, err := certs.NewController(client, certs.ControllerConfig{
		Namespace: ns, SecretName: *secretName, CASecretName: *caSecretName, WebhookConfigName: *webhookConfig,
		ServiceName: *serviceName, ClusterDomain: *clusterDomain, ExtraHosts: splitList(*extraHosts),
		Validity: *validity, CAValidity: *caValidity, BundlePropagation: *propagation, Resync: *resync,
		Logger: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *metricsListen != "" {
		ln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", *metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		ok := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }
		mux.HandleFunc("/healthz", ok)
		mux.HandleFunc("/readyz", ok)
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener failed", "err", err)
			}
		}()
		defer hs.Close()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}

	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: *leaseName, Namespace: ns},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *leaseDuration * 2 / 3,
		RetryPeriod:     *leaseDuration / 7,
		ReleaseOnCancel: true,
		Name:            *leaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				metrics.Leader.Set(1)
				log.Info("leading: reconciling certificates", "identity", id)
				ctrl.Run(ctx)
			},
			OnStoppedLeading: func() {
				metrics.Leader.Set(0)
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
