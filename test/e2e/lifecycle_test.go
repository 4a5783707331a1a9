//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dnsguard/dnsguard/test/e2e/rotation"
)

// servedCert is the certificate the webhook Service presents now (a fresh
// handshake through kube-proxy each call).
func servedCert(ctx context.Context) (*x509.Certificate, error) {
	hc, base, err := webhookClient(ctx)
	if err != nil {
		return nil, err
	}
	cfg := hc.Transport.(*http.Transport).TLSClientConfig.Clone()
	// The point is to see what is served, expired or not; the scenario
	// judges validity itself.
	cfg.InsecureSkipVerify = true
	d := &tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "https://"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// c5Renewal: the certificate controller repairs an emptied caBundle and a
// deleted serving Secret within seconds (its watches; the resync is 10
// minutes), then renews a 30 s serving certificate and rotates a 75 s CA
// (helm upgrade to short validities, on its own schedule, not a resync)
// while a pod is created every 200 ms: no creation fails, every pod is
// patched, the webhook Service presents several leaves and never an expired
// one. The scenario is test/e2e/rotation, run here on the real node.
func c5Renewal(ctx context.Context, t *testing.T) {
	c5Repair(ctx, t)
	short := []string{"--reuse-values",
		"--set", "certificates.validity=30s", "--set", "certificates.caValidity=75s",
		"--set", "certificates.controller.bundlePropagation=2s"}
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), short...)...); err != nil {
		t.Fatalf("helm upgrade to short validities: %v%s", err, diagnose(ctx, releaseNS))
	}
	res, err := rotation.Run(ctx, rotation.Config{
		Client: e2e.client, Namespace: nsEnabled,
		SecretNamespace: releaseNS, SecretName: tlsSecret,
		// 100 s: past the 75 s CA's 2/3 point (50 s) once and the 30 s
		// leaves' (20 s) about four times, so the counts asserted below
		// are reached with margin (160 s saw 12 leaves and 5 CAs).
		Duration: 100 * time.Second, Interval: 200 * time.Millisecond,
		Image:        glibcImage,
		NodeSelector: map[string]string{"dnsguard.io/e2e": "no-such-node"},
		Patched:      patched,
		Served: func(ctx context.Context) (*x509.Certificate, error) {
			return servedCert(ctx)
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotation on the real node: %+v", *res)
	if res.Failed != 0 || res.Unpatched != 0 {
		t.Errorf("%d of %d pod creations failed, %d unpatched: %v", res.Failed, res.Created, res.Unpatched, res.Errors)
	}
	if res.Leaves < 5 || res.CAs < 2 || res.ServedLeaves < 4 || res.ServedExpired > 0 {
		t.Errorf("leaves %d (want >= 5), CAs %d (want >= 2), served leaves %d (want >= 4), expired served %d (want 0)",
			res.Leaves, res.CAs, res.ServedLeaves, res.ServedExpired)
	}
	// Back to long-lived certificates for what follows.
	if _, err := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values",
		"--set", "certificates.validity=8760h", "--set", "certificates.caValidity=87600h")...); err != nil {
		t.Fatalf("helm upgrade back: %v", err)
	}
}

// c5Repair breaks what the controller keeps, the way a person or a
// re-rendered manifest would, and times the repair.
func c5Repair(ctx context.Context, t *testing.T) {
	const within = 10 * time.Second
	mwcs := e2e.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	secrets := e2e.client.CoreV1().Secrets(releaseNS)
	repaired := func() bool {
		sec, err := secrets.Get(ctx, tlsSecret, metav1.GetOptions{})
		if err != nil || len(sec.Data["tls.crt"]) == 0 {
			return false
		}
		mwc, err := mwcs.Get(ctx, webhookConfig, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, w := range mwc.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, sec.Data["ca.crt"]) {
				return false
			}
		}
		return true
	}
	for _, b := range []struct {
		what   string
		break_ func() error
	}{
		{"caBundle emptied", func() error {
			mwc, err := mwcs.Get(ctx, webhookConfig, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for i := range mwc.Webhooks {
				mwc.Webhooks[i].ClientConfig.CABundle = nil
			}
			_, err = mwcs.Update(ctx, mwc, metav1.UpdateOptions{})
			return err
		}},
		{"serving Secret deleted", func() error { return secrets.Delete(ctx, tlsSecret, metav1.DeleteOptions{}) }},
	} {
		if err := b.break_(); err != nil {
			t.Fatalf("%s: %v", b.what, err)
		}
		start := time.Now()
		for !repaired() {
			if time.Since(start) > within {
				t.Fatalf("%s: not repaired after %s%s", b.what, within, diagnose(ctx, releaseNS))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s: repaired by the certificate controller in %s", b.what, time.Since(start).Round(10*time.Millisecond))
	}
}

// c7UpgradeUninstall: pods created at 20/s across a helm upgrade that rolls
// the webhook Deployment and a rollout restart are all patched; helm
// uninstall then removes every object of the release, and leaves only what
// the README says it leaves.
func c7UpgradeUninstall(ctx context.Context, t *testing.T) {
	stop := make(chan struct{})
	s, wg := streamPods(ctx, nsEnabled, "upgrade", 20, stop)
	_, uerr := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values",
		"--set-string", "podAnnotations.dnsguard\\.io/e2e-rollout="+time.Now().Format("150405"))...)
	_, rerr := tool(ctx, "kubectl", "rollout", "restart", "-n", releaseNS, "deployment/"+fullname)
	_, serr := tool(ctx, "kubectl", "rollout", "status", "-n", releaseNS, "deployment/"+fullname, "--timeout=180s")
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	for _, err := range []error{uerr, rerr, serr} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every pod patched: the old replicas answer through their drain and
	// retire HTTP/1.1 connections one response at a time (webhook.Drain).
	s.check(t)
	deleteStream(ctx, nsEnabled, "upgrade")

	// What the release installed, by kind and name, before uninstall.
	installed, err := releaseObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tool(ctx, "helm", "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	// The webhook pods drain for shutdownDelaySeconds before they go.
	err = poll(ctx, 90*time.Second, func(ctx context.Context) (bool, error) {
		l, err := e2e.client.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("pods of the release still there 90s after uninstall%s", diagnose(ctx, releaseNS))
	}
	left, err := releaseObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readme, _ := os.ReadFile(filepath.Join(e2e.root, "README.md"))
	chartReadme, _ := os.ReadFile(filepath.Join(e2e.root, chartDir, "README.md"))
	for _, o := range left {
		name := o[strings.LastIndex(o, "/")+1:]
		if !strings.Contains(string(readme), name) && !strings.Contains(string(chartReadme), name) {
			t.Errorf("helm uninstall left %s, which neither README mentions", o)
		} else {
			t.Logf("left after uninstall, as documented: %s", o)
		}
	}
	t.Logf("release had %d objects; %d left after uninstall", len(installed), len(left))
	// No webhook configuration: new pods are untouched.
	if p := bare(ctx, t, nsEnabled, "after-uninstall", nil, nil, metav1.CreateOptions{}); patched(p) {
		t.Errorf("a pod created after uninstall was patched")
	}
}

// releaseObjects lists every object in the release namespace (any kind) and
// every cluster-scoped object labelled with the release, as KIND/NAME.
// The release namespace itself is not the release's (helm --create-namespace
// does not own it), nor are the namespace's defaults.
func releaseObjects(ctx context.Context) ([]string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", e2e.kubeconfig)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range lists {
		gv, _ := schema.ParseGroupVersion(l.GroupVersion)
		for _, r := range l.APIResources {
			if !strings.Contains(strings.Join(r.Verbs, ","), "list") || strings.Contains(r.Name, "/") {
				continue
			}
			switch r.Name {
			case "events", "endpoints", "endpointslices", "controllerrevisions":
				// Bookkeeping the cluster makes and removes on its own.
				// Leases are listed: in the release namespace the only one
				// is the certificate controller's leader Lease, which
				// nothing but the chart's pre-delete hook removes.
				continue
			}
			res := dyn.Resource(gv.WithResource(r.Name))
			var items []string
			if r.Namespaced {
				ul, err := res.Namespace(releaseNS).List(ctx, metav1.ListOptions{})
				if err != nil {
					continue
				}
				for _, u := range ul.Items {
					n := u.GetName()
					if (r.Kind == "ServiceAccount" && n == "default") || (r.Kind == "ConfigMap" && n == "kube-root-ca.crt") {
						continue
					}
					items = append(items, r.Kind+"/"+n)
				}
			} else {
				ul, err := res.List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
				if err != nil {
					continue
				}
				for _, u := range ul.Items {
					items = append(items, r.Kind+"/"+u.GetName())
				}
			}
			out = append(out, items...)
		}
	}
	return out, nil
}
