//go:build e2e

package e2e

// What the race lab relies on in the cluster: the kube-dns Service and
// kube-proxy's DNAT to both CoreDNS pods, and the lab's zone as CoreDNS
// answers it.

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// dig asks server for name and qtype from the node, one try.
func dig(ctx context.Context, server, name, qtype string) (lab.DigAnswer, error) {
	out, err := exec.CommandContext(ctx, "dig", "+time=2", "+tries=1", "+noall", "+comments", "+answer", "@"+server, name, qtype).Output()
	if err != nil {
		return lab.DigAnswer{}, fmt.Errorf("dig @%s %s %s: %w", server, name, qtype, err)
	}
	return lab.ParseDig(string(out)), nil
}

// checkZone asks CoreDNS, as the pods do, for a name of the lab's zone and
// records on the page what answers it: the rows' assertions rely on a
// forwarded answer of one record each for the A and the AAAA, and every
// lookup of every row must return those two addresses.
func (c *clusterLab) checkZone(ctx context.Context) error {
	name := "0." + c.unique("setup", "dig") + "." + raceZone + "."
	a, err := dig(ctx, clusterDNSIP, name, "A")
	if err != nil {
		return err
	}
	aaaa, err := dig(ctx, clusterDNSIP, name, "AAAA")
	if err != nil {
		return err
	}
	ok := a.One("A") && aaaa.One("AAAA")
	c.l.Check(ok, "CoreDNS (%s) answers %s: A %s %v, AAAA %s %v (want one record each)", clusterDNSIP, name, a.Status, a.Answers, aaaa.Status, aaaa.Answers)
	if !ok {
		return fmt.Errorf("the lab's zone %s is not answered as the rows need", raceZone)
	}
	// Every answered lookup of every row must return these two (lab.CheckAnswers).
	c.l.Addrs = []string{a.Answers[0].Data, aaaa.Answers[0].Data}
	c.l.NameHow = fmt.Sprintf("Lookup *i* of a row asks for the absolute name `%s` (`gailoop -u`; the trailing dot skips the search path, so every lookup is exactly one A+AAAA pair), a name of its own per lookup, row and run. CoreDNS forwards it (`forward . /etc/resolv.conf`) to the node's upstream resolver, dnsmasq on %s in the node's network namespace (test/cluster), which answers `*.%s`; asked from the node before the rows, CoreDNS answered A with `%s` (TTL %s) and AAAA with `%s` (TTL %s). No one asked for the name before, so no cache on the way — the sidecar's, the node cache's, CoreDNS's — can answer it: every lookup crosses the node, and CoreDNS answers the A only after a round trip of its own to the upstream, so the AAAA reaches conntrack while the A is unanswered, as when the DNS pod runs on another node.",
		raceNameShown, cluster.UpstreamIP, raceZone, a.Answers[0].Data, a.Answers[0].TTL, aaaa.Answers[0].Data, aaaa.Answers[0].TTL)
	return nil
}

// kubeProxyRulesShown says on the page where each mode's DNAT was read.
var kubeProxyRulesShown = map[cluster.ProxyMode]string{
	cluster.ProxyIPTables: "`KUBE-SERVICES` → `KUBE-SVC` → `KUBE-SEP` DNAT rules in `iptables-save -t nat`",
	cluster.ProxyNFTables: "the `service-ips` map of `nft list table ip kube-proxy` → service chain → endpoint chains' `dnat to`",
}

// checkKubeDNS checks what the lab relies on: the kube-dns Service on
// 10.96.0.10 with two ready CoreDNS endpoints, and kube-proxy's DNAT, in
// the mode it runs in, to both. It returns the CoreDNS pod IPs.
func (c *clusterLab) checkKubeDNS(ctx context.Context) ([]string, error) {
	svc, err := e2e.client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube-system/kube-dns: %w", err)
	}
	if svc.Spec.ClusterIP != clusterDNSIP {
		return nil, fmt.Errorf("kube-dns ClusterIP %s, want %s", svc.Spec.ClusterIP, clusterDNSIP)
	}
	var ips []string
	err = poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		sl, err := e2e.client.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
		if err != nil {
			return false, nil
		}
		ips = ips[:0]
		for _, s := range sl.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && ep.Conditions.Ready != nil && *ep.Conditions.Ready && !slices.Contains(ips, ep.Addresses[0]) {
					ips = append(ips, ep.Addresses[0])
				}
			}
		}
		return len(ips) >= 2, nil
	})
	c.l.Check(err == nil && len(ips) == 2, "kube-dns: Service %s with %d ready CoreDNS endpoints %v (want 2)", clusterDNSIP, len(ips), ips)
	// The rows count as "behind kube-proxy" only with kube-proxy's own DNAT
	// of the mode it runs in (checked again after every configuration).
	ok, what := dnsDNAT(ctx, ips)
	c.l.Check(ok, "the cluster DNS Service's DNAT is kube-proxy's: %s", what)
	dep, err := e2e.client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	image, user, replicas := "?", "?", "?"
	if err == nil && len(dep.Spec.Template.Spec.Containers) > 0 {
		ct := dep.Spec.Template.Spec.Containers[0]
		image = ct.Image
		if ct.SecurityContext != nil && ct.SecurityContext.RunAsUser != nil {
			user = strconv.FormatInt(*ct.SecurityContext.RunAsUser, 10)
		}
		if dep.Spec.Replicas != nil {
			replicas = strconv.Itoa(int(*dep.Spec.Replicas))
		}
	}
	node := "?"
	// The lab's pods run on the first node (the second is tainted).
	if n, err := e2e.client.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{}); err == nil {
		ni := n.Status.NodeInfo
		node = fmt.Sprintf("kubelet %s, %s, kernel %s", ni.KubeletVersion, ni.ContainerRuntimeVersion, ni.KernelVersion)
	}
	c.l.Real = append(c.l.Real,
		fmt.Sprintf("**kubelet and the container runtime** (%s; runc; CNI bridge `cni0`): created every client pod and wrote its `/etc/resolv.conf` (below, read from the pod sandbox)", node),
		fmt.Sprintf("**kube-proxy** in %s mode: its DNAT for `kube-system/kube-dns:dns` (%s; checked before the rows and after each run of rows) sent each lookup's conntrack entry to one of the CoreDNS pods %s", e2e.proxyMode, kubeProxyRulesShown[e2e.proxyMode], strings.Join(ips, " and ")),
		fmt.Sprintf("**CoreDNS**, upstream's code but not upstream's image: built here from source with the plugins the Corefiles here use (hack/build-tools.sh, `hack/tools/coredns`) and packaged by hack/images.sh as a one-layer image of the static binary, imported under the name `%s` that the standard manifest uses; Deployment `kube-system/coredns`, %s replicas, runAsUser %s, the standard Corefile (test/cluster/addons.go), forwarding the lab's names to the node's dnsmasq", image, replicas, user),
		"**dnsguard as users install it** (`helm install` with hooks): the webhook behind its Service mutated the b, c and d pods; the resolver sidecar was injected by the webhook and run by kubelet as a native sidecar; the node cache is the chart's DaemonSet",
		"**glibc and musl**: `getaddrinfo` of the distribution's glibc and of musl (static) in the e2e client images, inside the pods' own network namespaces")
	return ips, nil
}
