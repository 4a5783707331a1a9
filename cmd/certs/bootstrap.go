package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dnsguard/dnsguard/certs"
)

func init() {
	subcommands["bootstrap"] = subcommand{
		"create or renew the webhook TLS Secret and patch caBundle (Helm hook Job)",
		runBootstrap,
	}
}

// runBootstrap is the in-cluster certificate bootstrap: it runs as a Helm
// hook Job with a ServiceAccount limited to one Secret and one
// MutatingWebhookConfiguration, or locally with --kubeconfig for a webhook
// running outside the cluster (--out-dir).
func runBootstrap(args []string) error {
	fs := flag.NewFlagSet("certs bootstrap", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG)")
	namespace := fs.String("namespace", "", "namespace of the Secret and the webhook Service (default: the pod's namespace)")
	secretName := fs.String("secret-name", "", "kubernetes.io/tls Secret to create or reuse (required)")
	webhookConfig := fs.String("webhook-config-name", "", "MutatingWebhookConfiguration whose webhooks get caBundle; empty skips patching")
	serviceName := fs.String("service-name", "", "webhook Service; its DNS names become SANs")
	clusterDomain := fs.String("cluster-domain", "cluster.local", "cluster DNS domain for the Service FQDN SAN")
	extraHosts := fs.String("extra-hosts", "", "comma-separated extra SANs (IPs or DNS names), e.g. 127.0.0.1,localhost for URL mode")
	renewBefore := fs.Duration("renew-before", certs.DefaultRenewBefore, "renew when the certificate expires within this window")
	validity := fs.Duration("validity", certs.DefaultServingValidity, "lifetime of a new serving certificate")
	caValidity := fs.Duration("ca-validity", certs.DefaultCAValidity, "lifetime of a new CA")
	outDir := fs.String("out-dir", "", "also write ca.crt, tls.crt and tls.key into this directory")
	webhookWait := fs.Duration("webhook-wait", 2*time.Minute, "how long to wait for the webhook configuration to exist")
	timeout := fs.Duration("timeout", 5*time.Minute, "overall deadline")
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
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	if *secretName == "" {
		return fmt.Errorf("--secret-name is required")
	}
	ns := *namespace
	if ns == "" {
		ns = podNamespace()
	}
	if ns == "" {
		return fmt.Errorf("--namespace is required outside a pod")
	}
	restCfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "dnsguard-certs-bootstrap"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	res, err := certs.Bootstrap(ctx, client, certs.BootstrapConfig{
		Namespace:         ns,
		SecretName:        *secretName,
		WebhookConfigName: *webhookConfig,
		ServiceName:       *serviceName,
		ClusterDomain:     *clusterDomain,
		ExtraHosts:        splitList(*extraHosts),
		RenewBefore:       *renewBefore,
		Validity:          *validity,
		CAValidity:        *caValidity,
		OutDir:            *outDir,
		WebhookWait:       *webhookWait,
		Logger:            logger,
	})
	if err != nil {
		return err
	}
	logger.Info("bootstrap done", "secret", ns+"/"+*secretName, "action", string(res.Secret), "reason", res.Reason,
		"webhooksPatched", res.WebhooksPatched, "hosts", strings.Join(res.Hosts, ","))
	return nil
}

// restConfig prefers an explicit kubeconfig, then the in-cluster config,
// then $KUBECONFIG / ~/.kube/config through the usual loading rules.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	if c, err := rest.InClusterConfig(); err == nil {
		return c, nil
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no in-cluster config and no usable kubeconfig: %w", err)
	}
	return c, nil
}

// podNamespace reads the namespace of the pod's ServiceAccount token.
func podNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
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
