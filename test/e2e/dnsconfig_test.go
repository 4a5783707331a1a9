//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// c1DNSConfig: in a labelled namespace, glibc and musl pods of a Deployment
// get dnsConfig mode; inside the container, /etc/resolv.conf is exactly what
// /explain promised, and names resolve.
func c1DNSConfig(ctx context.Context, t *testing.T) {
	for _, img := range []struct{ name, image string }{{"glibc", glibcImage}, {"musl", muslImage}} {
		t.Run(img.name, func(t *testing.T) {
			names := lookupNames(nsEnabled)
			spec := clientSpec(img.image, names...)
			// What the webhook says it will do, asked before the pod exists.
			want := explain(ctx, t, nsEnabled, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsEnabled}, Spec: spec})
			if want.Mode != "dnsconfig" {
				t.Fatalf("/explain: mode %q (%s), want dnsconfig", want.Mode, want.Reason)
			}
			pods := deployment(ctx, t, nsEnabled, "dnsconfig-"+img.name, 1, nil, spec)
			p := pods[0]
			if p.Spec.DNSPolicy != corev1.DNSNone || p.Spec.DNSConfig == nil {
				t.Fatalf("pod %s: dnsPolicy %q, dnsConfig %v: not patched", p.Name, p.Spec.DNSPolicy, p.Spec.DNSConfig)
			}
			got, err := execIn(ctx, nsEnabled, p.Name, "app", "/bin/cat", "/etc/resolv.conf")
			if err != nil {
				t.Fatal(err)
			}
			if !sameResolvConf(got, want.ResolvConf) {
				t.Errorf("container /etc/resolv.conf differs from /explain:\n--- container\n%s--- /explain\n%s", got, want.ResolvConf)
			}
			log, err := logs(ctx, nsEnabled, p.Name, "app")
			if err != nil {
				t.Fatal(err)
			}
			res := firstLookups(log)
			for _, n := range names {
				if res[n] != "ok" {
					t.Errorf("getaddrinfo(%s) at pod start: %q, want ok\n%s", n, res[n], log)
				}
			}
			// And again from a fresh process, several times.
			for _, n := range names {
				if out, err := execIn(ctx, nsEnabled, p.Name, "app", "/gailoop", "-n", "3", "-t", "20", n); err != nil || strings.Contains(out, "fail") {
					t.Errorf("gailoop %s in %s: %v\n%s", n, p.Name, err, out)
				}
			}
		})
	}
}

// sameResolvConf compares two resolv.conf files line by line, except that
// the words of the options line are compared as a set: kubelet merges the
// options through a map, so their order in the container varies from pod to
// pod (seen on this node), and the resolvers do not care about it.
func sameResolvConf(a, b string) bool {
	norm := func(s string) []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "options" {
				opts := f[1:]
				slices.Sort(opts)
				l = "options " + strings.Join(opts, " ")
			}
			out = append(out, strings.TrimSpace(l))
		}
		return out
	}
	return slices.Equal(norm(a), norm(b))
}
