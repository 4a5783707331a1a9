//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
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
)

// servedCert is the serial of the certificate the webhook Service presents
// now (a fresh handshake through kube-proxy each call).
func servedCert(ctx context.Context) (string, error) {
	hc, base, err := webhookClient(ctx)
	if err != nil {
		return "", err
	}
	addr := strings.TrimPrefix(base, "https://")
	d := &tls.Dialer{Config: hc.Transport.(*http.Transport).TLSClientConfig}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// c5Renewal: a renewal of the serving certificate (helm upgrade with a
// renewal window longer than the validity, so the certificate Job issues a
// new leaf) while pods are created at 10/s: no creation fails, every pod is
// patched, and the webhook ends up serving the new certificate.
func c5Renewal(ctx context.Context, t *testing.T) {
	before, err := servedCert(ctx)
	if err != nil {
		t.Fatalf("handshake with the webhook Service: %v", err)
	}
	stop := make(chan struct{})
	s, wg := streamPods(ctx, nsEnabled, "renew", 10, stop)
	_, uerr := tool(ctx, "helm", append(installArgs("upgrade"), "--reuse-values", "--set", "certificates.renewBefore=87600h")...)
	var after string
	perr := poll(ctx, 150*time.Second, func(ctx context.Context) (bool, error) {
		after, err = servedCert(ctx)
		return err == nil && after != before, nil
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if uerr != nil {
		t.Fatalf("helm upgrade: %v", uerr)
	}
	if perr != nil {
		t.Errorf("the webhook still serves serial %s 150s after the renewal", before)
	}
	s.check(t)
	deleteStream(ctx, nsEnabled, "renew")
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
			case "events", "endpoints", "endpointslices", "leases", "controllerrevisions":
				continue // bookkeeping the cluster makes and removes on its own
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
