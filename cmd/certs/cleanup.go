package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func init() {
	subcommands["cleanup"] = subcommand{
		"delete the webhook configuration, stop the certificate controller, then delete its Secrets and Lease (Helm pre-delete hook)",
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
//
// The controller is stopped (scaled to 0) before its Secrets and Lease go,
// and the hook waits until it has released its Lease: Helm removes the
// controller's Role together with its Deployment, so a controller stopped
// by Helm could no longer release the Lease, and a reinstall's controller
// then waited for it to expire (lease duration plus a retry) before it wrote
// a certificate; the webhook pods' Secret volume backed off meanwhile, and
// helm install --wait returned 35-45 s after the command (e2e c8 and u1 at
// 3b45f80; 2.5 s once the hook stops the controller, c8 at 4128241). A controller that is not stopped could
// also write a Secret after the hook deleted it.
func runCleanup(args []string) error {
	fs := flag.NewFlagSet("certs cleanup", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster ServiceAccount (or $KUBECONFIG)")
	namespace := fs.String("namespace", "", "namespace of the Secrets (default: the pod's namespace)")
	webhookConfig := fs.String("webhook-config-name", "", "MutatingWebhookConfiguration to delete first (required)")
	secrets := fs.String("secret-names", "", "comma-separated Secrets to delete afterwards (the serving and CA Secrets the controller created)")
	deployment := fs.String("controller-deployment", "", "the certificate controller's Deployment, scaled to 0 before its Secrets are deleted (empty: none)")
	lease := fs.String("lease-name", "", "the controller's leader election Lease: waited for until released (or expired), then deleted (empty: none)")
	leaseWait := fs.Duration("lease-wait", 30*time.Second, "longest wait for the controller to release its Lease; the hook goes on after it (the Lease is deleted anyway)")
	admissionCheck := fs.String("admission-check-name", "", "the admission check hook's Pod, ServiceAccount, Role and RoleBinding, deleted when a failed install left them (empty: none)")
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
	if (len(names) > 0 || *deployment != "" || *lease != "" || *admissionCheck != "") && ns == "" {
		return fmt.Errorf("--namespace is required outside a pod")
	}
	client, err := clientset(*kubeconfig, "dnsguard-certs-cleanup")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return cleanup(ctx, client, cleanupTargets{
		webhookConfig: *webhookConfig, namespace: ns, secrets: names,
		deployment: *deployment, lease: *lease, leaseWait: *leaseWait, admissionCheck: *admissionCheck,
	}, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

// cleanupTargets names what the hook removes; empty names are skipped.
type cleanupTargets struct {
	webhookConfig string
	namespace     string
	secrets       []string
	deployment    string
	lease         string
	leaseWait     time.Duration
	// admissionCheck names the post-install hook's objects: Helm deletes
	// them when the hook succeeds, keeps them (for their log) when it fails,
	// and never tracks them in the release, so an uninstall after a failed
	// install would leave them behind.
	admissionCheck string
}

// cleanup deletes the webhook configuration, stops the controller and waits
// for its Lease, then deletes the Secrets and the Lease; objects that are
// already gone are fine (a retried hook, or another mode's release).
func cleanup(ctx context.Context, client kubernetes.Interface, t cleanupTargets, log *slog.Logger) error {
	mwc, ns := t.webhookConfig, t.namespace
	err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mwc, metav1.DeleteOptions{})
	switch {
	case err == nil:
		log.Info("deleted mutatingwebhookconfiguration", "name", mwc)
	case apierrors.IsNotFound(err):
		log.Info("mutatingwebhookconfiguration already gone", "name", mwc)
	default:
		return fmt.Errorf("delete mutatingwebhookconfiguration %s: %w", mwc, err)
	}
	if t.deployment != "" {
		if err := stopController(ctx, client, ns, t.deployment, log); err != nil {
			return err
		}
	}
	if t.lease != "" {
		waitLeaseReleased(ctx, client, ns, t.lease, t.leaseWait, log)
	}
	for _, s := range t.secrets {
		err := client.CoreV1().Secrets(ns).Delete(ctx, s, metav1.DeleteOptions{})
		switch {
		case err == nil:
			log.Info("deleted secret", "secret", ns+"/"+s)
		case apierrors.IsNotFound(err):
		default:
			return fmt.Errorf("delete secret %s/%s: %w", ns, s, err)
		}
	}
	if t.lease != "" {
		err := client.CoordinationV1().Leases(ns).Delete(ctx, t.lease, metav1.DeleteOptions{})
		switch {
		case err == nil:
			log.Info("deleted lease", "lease", ns+"/"+t.lease)
		case apierrors.IsNotFound(err):
		default:
			return fmt.Errorf("delete lease %s/%s: %w", ns, t.lease, err)
		}
	}
	if n := t.admissionCheck; n != "" {
		for _, o := range []struct {
			kind string
			del  func(context.Context, string, metav1.DeleteOptions) error
		}{
			{"pod", client.CoreV1().Pods(ns).Delete},
			{"rolebinding", client.RbacV1().RoleBindings(ns).Delete},
			{"role", client.RbacV1().Roles(ns).Delete},
			{"serviceaccount", client.CoreV1().ServiceAccounts(ns).Delete},
		} {
			err := o.del(ctx, n, metav1.DeleteOptions{})
			switch {
			case err == nil:
				log.Info("deleted a failed admission check's "+o.kind, o.kind, ns+"/"+n)
			case apierrors.IsNotFound(err):
			default:
				return fmt.Errorf("delete %s %s/%s: %w", o.kind, ns, n, err)
			}
		}
	}
	return nil
}

// stopController scales the controller's Deployment to 0 through its scale
// subresource (RBAC: update on deployments/scale of that one name; the scale
// subresource takes an update without a resourceVersion); its pods release
// the Lease on SIGTERM while their Role still exists.
func stopController(ctx context.Context, client kubernetes.Interface, ns, name string, log *slog.Logger) error {
	_, err := client.AppsV1().Deployments(ns).UpdateScale(ctx, name, &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 0},
	}, metav1.UpdateOptions{})
	switch {
	case err == nil:
		log.Info("scaled the certificate controller to 0", "deployment", ns+"/"+name)
	case apierrors.IsNotFound(err):
		log.Info("certificate controller already gone", "deployment", ns+"/"+name)
	default:
		return fmt.Errorf("scale deployment %s/%s to 0: %w", ns, name, err)
	}
	return nil
}

// waitLeaseReleased polls the Lease until no one holds it (released,
// expired or gone) or wait has passed. It never fails the hook: a Lease
// left held only costs the next install its expiry.
func waitLeaseReleased(ctx context.Context, client kubernetes.Interface, ns, name string, wait time.Duration, log *slog.Logger) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			log.Info("lease gone", "lease", ns+"/"+name, "after", time.Since(start).String())
			return
		case err == nil && leaseFree(l, time.Now()):
			log.Info("lease released", "lease", ns+"/"+name, "after", time.Since(start).String())
			return
		}
		select {
		case <-ctx.Done():
			log.Warn("lease still held; deleting it anyway", "lease", ns+"/"+name, "waited", wait.String(), "err", err)
			return
		case <-tick.C:
		}
	}
}

// leaseFree: nobody holds l, or its holder stopped renewing it.
func leaseFree(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return true
	}
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}
