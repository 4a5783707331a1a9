//go:build e2e

package e2e

// What the webhook and kubelet gave each race lab pod: the stored spec and
// the resolv.conf in the pod's sandbox.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// captureResolv copies the resolv.conf kubelet had containerd write for pod
// name from its sandbox directory (<containerd root>/<cri plugin>/sandboxes/
// <id>/{hostname,resolv.conf}; the sandbox of a finished pod stays until the
// pod is deleted) and checks it against the mode.
func (c *clusterLab) captureResolv(mode, ns, name string) {
	runDir := os.Getenv("CLUSTER_RUN_DIR")
	var resolv []byte
	for _, pat := range []string{"containerd/*/*/sandboxes/*/hostname", "containerd/*/sandboxes/*/hostname", "containerd/*/*/*/sandboxes/*/hostname"} {
		files, _ := filepath.Glob(filepath.Join(runDir, pat))
		for _, f := range files {
			if h, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(h)) == name {
				if b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "resolv.conf")); err == nil {
					resolv = b
				}
			}
		}
	}
	if resolv == nil {
		c.l.Fail("resolv.conf of %s (%s): no sandbox with hostname %s under %s/containerd", mode, name, name, runDir)
		return
	}
	c.l.Resolv[mode] = string(resolv)
	var nameservers, options []string
	search := ""
	for _, line := range strings.Split(string(resolv), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "nameserver":
			nameservers = append(nameservers, f[1])
		case len(f) >= 2 && f[0] == "search":
			search = strings.Join(f[1:], " ")
		case len(f) >= 2 && f[0] == "options":
			options = append(options, f[1:]...)
		}
	}
	if mode == "sidecar-control" || mode == "sidecar-nofallback" {
		ns = nsRaceGuard // the webhook rendered it for the labelled namespace
	}
	wantSearch := ns + ".svc.cluster.local svc.cluster.local cluster.local"
	var ok bool
	var want string
	switch mode {
	case "off":
		ok, want = slices.Equal(nameservers, []string{clusterDNSIP}) && slices.Contains(options, "ndots:5") && !slices.Contains(options, "single-request-reopen"),
			"ClusterFirst: nameserver "+clusterDNSIP+", ndots:5, no single-request-reopen"
	case "dnsconfig":
		ok, want = slices.Equal(nameservers, []string{clusterDNSIP}) && slices.Contains(options, "single-request-reopen") && slices.Contains(options, "timeout:2") && slices.Contains(options, "attempts:3"),
			"nameserver "+clusterDNSIP+", timeout:2 attempts:3 single-request-reopen"
	case "sidecar", "sidecar-control":
		ok, want = len(nameservers) > 0 && nameservers[0] == "127.0.0.1", "127.0.0.1 first"
	case "sidecar-nofallback":
		ok, want = slices.Equal(nameservers, []string{"127.0.0.1"}), "127.0.0.1 only"
	case "nodelocal", "nodelocal-control":
		ok, want = slices.Equal(nameservers, []string{nodeLocalIP, clusterDNSIP}), "node cache "+nodeLocalIP+" first, "+clusterDNSIP+" second"
	}
	ok = ok && strings.HasPrefix(search, wantSearch)
	c.l.Check(ok, "kubelet's resolv.conf for %s: %s, search %s… (got nameservers %v, search %q, options %v)", mode, want, wantSearch, nameservers, search, options)
}

// checkPod: the stored pod carries what the mode promises.
func (c *clusterLab) checkPod(t *testing.T, mode string, p *corev1.Pod) {
	t.Helper()
	ns := []string(nil)
	if p.Spec.DNSConfig != nil {
		ns = p.Spec.DNSConfig.Nameservers
	}
	sidecar := len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == sidecarName
	var ok bool
	var want string
	switch mode {
	case "off":
		ok, want = !patched(p) && p.Spec.DNSPolicy == corev1.DNSClusterFirst, "untouched, dnsPolicy ClusterFirst"
	case "dnsconfig":
		ok, want = p.Spec.DNSPolicy == corev1.DNSNone && slices.Equal(ns, []string{clusterDNSIP}) && !sidecar, "dnsPolicy None, nameservers ["+clusterDNSIP+"]"
	case "sidecar":
		ok, want = sidecar && len(ns) > 0 && ns[0] == "127.0.0.1", "the "+sidecarName+" native sidecar first, nameserver 127.0.0.1 first"
	case "sidecar-nofallback":
		ok, want = sidecar && slices.Equal(ns, []string{"127.0.0.1"}), "the "+sidecarName+" native sidecar first, nameservers [127.0.0.1]"
	case "sidecar-control":
		ok, want = sidecar && len(ns) > 0 && ns[0] == "127.0.0.1" && slices.Contains(p.Spec.InitContainers[0].Args, "--upstream="+blackhole+":53"),
			"the "+sidecarName+" native sidecar first with --upstream="+blackhole+":53, nameserver 127.0.0.1 first"
	case "nodelocal", "nodelocal-control":
		ok, want = slices.Equal(ns, []string{nodeLocalIP, clusterDNSIP}), "nameservers ["+nodeLocalIP+" "+clusterDNSIP+"]"
	}
	if ok && c.podChecked[mode] {
		return // one PASS line per mode; every failure is listed
	}
	c.podChecked[mode] = true
	c.l.Check(ok, "pod spec %s (%s): %s; got dnsPolicy %s, nameservers %v, sidecar %v", mode, p.Name, want, p.Spec.DNSPolicy, ns, sidecar)
}
