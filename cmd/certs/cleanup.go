package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func init() {
	subcommands["cleanup"] = subcommand{
		"delete the webhook configuration, then the certificate Secrets (Helm pre-delete hook)",
		runCleanup,
	}
}

// runCleanup runs as a Helm pre-delete hook. Helm deletes a release's
// objects in an order that removes the Deployment and Service before the
// MutatingWebhookConfiguration, and does not wait: with failurePolicy Fail
// an interrupted uninstall would leave a webhook that rejects every pod of
// the selected namespaces. Deleting the configuration first closes that
// window. The Secrets the certificate controller created are not Helm's
// objects, so Helm would leave them (and the CA key) behind.
func runCleanup(args []string) error {
	fs := flag.NewFlagSet("certs cleanup", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG)")
	namespace := fs.String("namespace", "", "namespace of the Secrets (default: the pod's namespace)")
	webhookConfig := fs.String("webhook-config-name", "", "MutatingWebhookConfiguration to delete first (required)")
	secrets := fs.String("secret-names", "", "comma-separated Secrets to delete afterwards (the serving and CA Secrets the controller created)")
	timeout := fs.Duration("timeout", time.Minute, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *webhookConfig == "" {
		return fmt.Errorf("--webhook-config-name is required")
	}
	ns := *namespace
	if ns == "" {
		ns = podNamespace()
	}
	names := splitList(*secrets)
	if len(names) > 0 && ns == "" {
		return fmt.Errorf("--namespace is required outside a pod")
	}
	restCfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "dnsguard-certs-cleanup"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return cleanup(ctx, client, *webhookConfig, ns, names, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

// cleanup deletes the webhook configuration, then the Secrets; objects that
// are already gone are fine (a retried hook, or another mode's release).
func cleanup(ctx context.Context, client kubernetes.Interface, mwc, ns string, secrets []string, log *slog.Logger) error {
	err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mwc, metav1.DeleteOptions{})
	switch {
	case err == nil:
		log.Info("deleted mutatingwebhookconfiguration", "name", mwc)
	case apierrors.IsNotFound(err):
		log.Info("mutatingwebhookconfiguration already gone", "name", mwc)
	default:
		return fmt.Errorf("delete mutatingwebhookconfiguration %s: %w", mwc, err)
	}
	for _, s := range secrets {
		err := client.CoreV1().Secrets(ns).Delete(ctx, s, metav1.DeleteOptions{})
		switch {
		case err == nil:
			log.Info("deleted secret", "secret", ns+"/"+s)
		case apierrors.IsNotFound(err):
		default:
			return fmt.Errorf("delete secret %s/%s: %w", ns, s, err)
		}
	}
	return nil
}
