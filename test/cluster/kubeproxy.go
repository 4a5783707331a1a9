package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// kube-proxy runs in one of two modes, the ones users' Linux clusters run:
// iptables (the default) and nftables (GA since Kubernetes 1.33, where
// upstream is heading; IPVS is deprecated). Both DNAT a Service IP to its
// endpoints in the node namespace, with different machinery: KUBE-SERVICES,
// KUBE-SVC-* and KUBE-SEP-* chains in the nat table (iptables-nft on this
// machine), or a table of its own, `table ip kube-proxy` (and `ip6`), whose
// service-ips map sends a Service IP to a service chain and from there to
// endpoint chains. Which one a run uses is Config.ProxyMode; the e2e suite
// can switch a running cluster to the other (Cluster.SetProxyMode).

// ProxyMode is kube-proxy's mode.
type ProxyMode string

// The modes the test cluster runs.
const (
	ProxyIPTables ProxyMode = "iptables"
	ProxyNFTables ProxyMode = "nftables"
)

// Valid rejects a mode the cluster does not run, naming it.
func (m ProxyMode) Valid() error {
	if m == ProxyIPTables || m == ProxyNFTables {
		return nil
	}
	return fmt.Errorf("kube-proxy mode %q: want %q or %q", string(m), ProxyIPTables, ProxyNFTables)
}

// Other is the mode a switch goes to.
func (m ProxyMode) Other() ProxyMode {
	if m == ProxyNFTables {
		return ProxyIPTables
	}
	return ProxyNFTables
}

// KubeProxyMetrics is kube-proxy's metrics address in the node namespace
// (metricsBindAddress); GET /proxyMode there answers the mode it runs in.
const KubeProxyMetrics = "127.0.0.1:10249"

// kubeProxyConfig is kube-proxy's configuration for mode. conntrack: 0
// everywhere so kube-proxy writes no machine-wide conntrack sysctl
// (nf_conntrack_max is global). Both modes' sync settings are given; the
// mode picks its own.
func (c *Cluster) kubeProxyConfig(n *node, mode ProxyMode) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
mode: %s
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 0.0.0.0
metricsBindAddress: %s
healthzBindAddress: 127.0.0.1:10256
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables: {syncPeriod: 10s, minSyncPeriod: 0s}
nftables: {syncPeriod: 10s, minSyncPeriod: 0s}
`, c.cfg.path("pki", "kube-proxy.kubeconfig"), mode, c.cfg.clusterCIDRs(), n.name, KubeProxyMetrics)
}

func (c *Cluster) kubeProxyArgs(n *node) []string {
	return []string{filepath.Join(c.cfg.Bin, "kube-proxy"), "--config=" + n.path("kube-proxy.yaml"), "--v=1"}
}

// ProxyMode is the mode kube-proxy runs in now.
func (c *Cluster) ProxyMode() ProxyMode { return c.cfg.ProxyMode }

// startKubeProxy writes the configuration for c.cfg.ProxyMode and starts
// the node's kube-proxy.
func (c *Cluster) startKubeProxy(n *node) error {
	p := n.path("kube-proxy.yaml")
	if err := os.WriteFile(p, []byte(c.kubeProxyConfig(n, c.cfg.ProxyMode)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return c.startProcIn(n, "kube-proxy", nil, c.kubeProxyArgs(n))
}

// waitKubeProxy waits until kube-proxy serves the Service the API server
// is reached by in the mode it was told, and nothing of the other mode's
// DNAT is left in the namespace: /proxyMode answers the mode, the
// kubernetes Service (10.96.0.1:443/tcp) has its DNAT to the API server in
// that mode's rules, and the other mode's rules are gone (kube-proxy
// removes them at start). It returns how long it waited. Every node's
// kube-proxy is checked in its own namespace.
func (c *Cluster) waitKubeProxy(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for _, n := range c.nodes {
		if err := c.waitNodeKubeProxy(ctx, n, timeout); err != nil {
			return time.Since(start), err
		}
	}
	return time.Since(start), nil
}

func (c *Cluster) waitNodeKubeProxy(ctx context.Context, n *node, timeout time.Duration) error {
	mode := c.cfg.ProxyMode
	hc := &http.Client{Transport: &http.Transport{DialContext: netnsDial(n.netns)}, Timeout: 3 * time.Second}
	return c.poll(ctx, n.name+"'s kube-proxy in "+string(mode)+" mode", timeout, func(ctx context.Context) (bool, error) {
		got, err := ReadProxyMode(ctx, hc)
		if err != nil {
			return false, err
		}
		if got != mode {
			return false, fmt.Errorf("kube-proxy reports mode %q on %s/proxyMode, configured %q", got, KubeProxyMetrics, mode)
		}
		d, err := ReadServiceDNAT(ctx, n.netns, mode, KubernetesSvc, "tcp", 443)
		if err != nil {
			return false, err
		}
		if !d.Dispatched || !slices.Contains(d.Endpoints, fmt.Sprintf("%s:%d", NodeIP, APIPort)) {
			return false, fmt.Errorf("no %s DNAT of the kubernetes Service yet: %s", mode, d)
		}
		if left, err := ProxyRulesPresent(ctx, n.netns, mode.Other()); err != nil || left != "" {
			return false, errors.Join(err, fmt.Errorf("the %s mode's rules are still there: %s", mode.Other(), left))
		}
		return true, nil
	})
}

// SetProxyMode restarts kube-proxy in mode and waits (waitKubeProxy) until
// it serves Services in that mode alone: kube-proxy deletes the other
// mode's rules when it starts. Not safe for concurrent use with Up or Down.
func (c *Cluster) SetProxyMode(ctx context.Context, mode ProxyMode) (time.Duration, error) {
	if err := mode.Valid(); err != nil {
		return 0, err
	}
	start := time.Now()
	for _, n := range c.nodes {
		if p := c.procs[n.proc("kube-proxy")]; p != nil {
			if err := p.Stop(10 * time.Second); err != nil {
				c.cfg.Log("stop %s: %v", n.proc("kube-proxy"), err)
			}
			delete(c.procs, n.proc("kube-proxy"))
		}
	}
	c.cfg.ProxyMode = mode
	for _, n := range c.nodes {
		if err := c.startKubeProxy(n); err != nil {
			return 0, fmt.Errorf("start %s's kube-proxy in %s mode: %w", n.name, mode, err)
		}
	}
	if _, err := c.waitKubeProxy(ctx, 60*time.Second); err != nil {
		return 0, err
	}
	took := time.Since(start)
	c.cfg.Log("kube-proxy restarted in %s mode in %.1fs; no %s rules left", mode, took.Seconds(), mode.Other())
	return took, nil
}

// ReadProxyMode asks kube-proxy's metrics endpoint which mode it runs in;
// hc must dial inside the node namespace.
func ReadProxyMode(ctx context.Context, hc *http.Client) (ProxyMode, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+KubeProxyMetrics+"/proxyMode", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("kube-proxy /proxyMode: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("kube-proxy /proxyMode: HTTP %d %q: %v", resp.StatusCode, b, err)
	}
	return ProxyMode(strings.TrimSpace(string(b))), nil
}

// runIn runs argv in the namespace netns (a /proc path), or in the
// caller's when netns is empty (the e2e suite runs inside the node's).
func runIn(ctx context.Context, netns string, argv ...string) (string, error) {
	if netns != "" {
		argv = append([]string{"nsenter", "--net=" + netns, "--"}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return string(out), fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return string(out), nil
}

// ProxyRulesPresent lists what of kube-proxy's rules for mode is in the
// namespace (empty: none): for iptables, the KUBE-SERVICES chain in the nat
// table (the entry of every Service DNAT); for nftables, its tables
// `ip kube-proxy` and `ip6 kube-proxy`.
func ProxyRulesPresent(ctx context.Context, netns string, mode ProxyMode) (string, error) {
	switch mode {
	case ProxyIPTables:
		var found []string
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			out, err := runIn(ctx, netns, save)
			if err != nil {
				return "", err
			}
			if regexp.MustCompile(`(?m)^:KUBE-SERVICES `).MatchString(natSection(out)) {
				found = append(found, "chain KUBE-SERVICES in "+strings.TrimSuffix(save, "-save")+"' nat table")
			}
		}
		return strings.Join(found, ", "), nil
	case ProxyNFTables:
		out, err := runIn(ctx, netns, "nft", "list", "tables")
		if err != nil {
			return "", err
		}
		return strings.Join(kubeProxyTables(out), ", "), nil
	}
	return "", mode.Valid()
}

// kubeProxyTables picks kube-proxy's tables out of `nft list tables`.
func kubeProxyTables(listing string) []string {
	var found []string
	for _, l := range strings.Split(listing, "\n") {
		if l = strings.TrimSpace(l); l == "table ip kube-proxy" || l == "table ip6 kube-proxy" {
			found = append(found, l)
		}
	}
	return found
}

// ServiceDNAT is what kube-proxy programmed for one Service port.
type ServiceDNAT struct {
	Mode ProxyMode
	// Dispatched: the Service IP, protocol and port lead to the Service's
	// own chain (a KUBE-SERVICES rule; an element of the service-ips map).
	Dispatched bool
	// Chain is that chain's name.
	Chain string
	// Endpoints are the DNAT destinations (ip:port) reached from it.
	Endpoints []string
}

func (d ServiceDNAT) String() string {
	if !d.Dispatched {
		return fmt.Sprintf("%s: the Service is not dispatched", d.Mode)
	}
	return fmt.Sprintf("%s: %s → DNAT to %v", d.Mode, d.Chain, d.Endpoints)
}

// ReadServiceDNAT reads kube-proxy's DNAT of svcIP:port/proto in mode from
// the namespace's rules.
func ReadServiceDNAT(ctx context.Context, netns string, mode ProxyMode, svcIP, proto string, port int) (ServiceDNAT, error) {
	switch mode {
	case ProxyIPTables:
		// All tables: `-t nat` fails where nothing made the nat table.
		out, err := runIn(ctx, netns, "iptables-save")
		if err != nil {
			return ServiceDNAT{Mode: mode}, err
		}
		return ParseIPTablesDNAT(out, svcIP, proto, port), nil
	case ProxyNFTables:
		out, err := runIn(ctx, netns, "nft", "list", "table", "ip", "kube-proxy")
		if err != nil {
			// No table: nothing dispatched, which the caller reports.
			return ServiceDNAT{Mode: mode}, nil
		}
		return ParseNFTablesDNAT(out, svcIP, proto, port), nil
	}
	return ServiceDNAT{Mode: mode}, mode.Valid()
}

// ParseIPTablesDNAT follows `iptables-save -t nat`: the KUBE-SERVICES rule
// for svcIP/32, proto and port jumps to a KUBE-SVC-* chain, whose rules
// jump to KUBE-SEP-* chains, whose rules DNAT (for proto) to an endpoint.
func ParseIPTablesDNAT(save, svcIP, proto string, port int) ServiceDNAT {
	d := ServiceDNAT{Mode: ProxyIPTables}
	rules := map[string][]string{} // chain → its rules' arguments
	for _, l := range strings.Split(natSection(save), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "-A" {
			rules[f[1]] = append(rules[f[1]], " "+strings.Join(f[2:], " ")+" ")
		}
	}
	target := func(rule string) string {
		if _, t, ok := strings.Cut(rule, " -j "); ok {
			return strings.Fields(t)[0]
		}
		return ""
	}
	for _, r := range rules["KUBE-SERVICES"] {
		if strings.Contains(r, " -d "+svcIP+"/32 ") && strings.Contains(r, " -p "+proto+" ") &&
			strings.Contains(r, " --dport "+strconv.Itoa(port)+" ") && strings.HasPrefix(target(r), "KUBE-SVC-") {
			d.Dispatched, d.Chain = true, target(r)
			break
		}
	}
	if !d.Dispatched {
		return d
	}
	for _, r := range rules[d.Chain] {
		sep := target(r)
		if !strings.HasPrefix(sep, "KUBE-SEP-") {
			continue
		}
		for _, sr := range rules[sep] {
			if target(sr) == "DNAT" && strings.Contains(sr, " -p "+proto+" ") {
				if _, to, ok := strings.Cut(sr, " --to-destination "); ok && !slices.Contains(d.Endpoints, strings.Fields(to)[0]) {
					d.Endpoints = append(d.Endpoints, strings.Fields(to)[0])
				}
			}
		}
	}
	return d
}

// natSection is the nat table of iptables-save's output (kube-proxy has a
// KUBE-SERVICES chain in filter too, for Services without endpoints).
func natSection(save string) string {
	_, nat, ok := strings.Cut(save, "\n*nat\n")
	if !ok {
		if nat, ok = strings.CutPrefix(save, "*nat\n"); !ok {
			return ""
		}
	}
	nat, _, _ = strings.Cut(nat, "\nCOMMIT")
	return nat
}

var (
	// An element of kube-proxy's service-ips map: "IP . PROTO . PORT : goto CHAIN".
	nftServiceElemRE = regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+) \. (\w+) \. (\d+) : goto "?(service-[^\s,}"]+)"?`)
	nftEndpointRefRE = regexp.MustCompile(`(?:goto|jump) "?(endpoint-[^\s,}"]+)"?`)
	nftDNATRE        = regexp.MustCompile(`dnat (?:ip )?to (\d+\.\d+\.\d+\.\d+:\d+)`)
	// A DNAT through a numgen map, one element per endpoint: "dnat ip to
	// numgen random mod 2 map { 0 : 10.244.0.2 . 53, 1 : 10.244.0.3 . 53 }".
	nftDNATMapRE = regexp.MustCompile(`dnat (?:ip )?to numgen [^{]*\{([^}]*)\}`)
	nftMapElemRE = regexp.MustCompile(`\d+ : (\d+\.\d+\.\d+\.\d+) \. (\d+)`)
)

// nftChains splits `nft list table` output into chain bodies by name,
// counting braces (a chain's verdict map has braces of its own).
func nftChains(listing string) map[string]string {
	chains := map[string]string{}
	lines := strings.Split(listing, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "chain ") || !strings.HasSuffix(l, "{") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "chain "), "{")), `"`)
		depth := 1
		var body []string
		for i++; i < len(lines) && depth > 0; i++ {
			depth += strings.Count(lines[i], "{") - strings.Count(lines[i], "}")
			if depth > 0 {
				body = append(body, lines[i])
			}
		}
		i--
		chains[name] = strings.Join(body, "\n")
	}
	return chains
}

// ParseNFTablesDNAT follows `nft list table ip kube-proxy`: the element of
// the service-ips map for svcIP . proto . port goes to a service chain,
// which goes to endpoint chains, each of which DNATs to its endpoint.
func ParseNFTablesDNAT(listing, svcIP, proto string, port int) ServiceDNAT {
	d := ServiceDNAT{Mode: ProxyNFTables}
	// The map's elements: everything between "map service-ips {" and the
	// end of its elements list.
	_, m, ok := strings.Cut(listing, "map service-ips {")
	if !ok {
		return d
	}
	if end := strings.Index(m, "}\n"); end >= 0 {
		m = m[:end]
	}
	for _, e := range nftServiceElemRE.FindAllStringSubmatch(m, -1) {
		if e[1] == svcIP && e[2] == proto && e[3] == strconv.Itoa(port) {
			d.Dispatched, d.Chain = true, e[4]
			break
		}
	}
	if !d.Dispatched {
		return d
	}
	chains := nftChains(listing)
	add := func(body string) {
		var to []string
		for _, m := range nftDNATRE.FindAllStringSubmatch(body, -1) {
			to = append(to, m[1])
		}
		for _, m := range nftDNATMapRE.FindAllStringSubmatch(body, -1) {
			for _, e := range nftMapElemRE.FindAllStringSubmatch(m[1], -1) {
				to = append(to, e[1]+":"+e[2])
			}
		}
		for _, x := range to {
			if !slices.Contains(d.Endpoints, x) {
				d.Endpoints = append(d.Endpoints, x)
			}
		}
	}
	// v1.37.2 DNATs in the service chain itself, to the one endpoint
	// ("meta l4proto tcp dnat to 10.200.0.2:6443") or through a numgen map
	// over all of them (testdata/nft-kube-proxy.txt, listed on this
	// cluster); earlier releases jumped to an endpoint chain per endpoint,
	// which is followed too.
	add(chains[d.Chain])
	for _, ref := range nftEndpointRefRE.FindAllStringSubmatch(chains[d.Chain], -1) {
		add(chains[ref[1]])
	}
	return d
}
