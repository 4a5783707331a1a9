//go:build e2e

package e2e

// kube-proxy's mode as the suite sees it: what kube-proxy itself reports,
// whose DNAT a Service goes through, and the switch to the other mode
// through dgcluster's control socket (k1).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dnsguard/dnsguard/test/cluster"
)

// localHTTP talks to kube-proxy's metrics port on the node's loopback (this
// binary runs in the node namespace), never through a proxy.
var localHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 3 * time.Second}

// checkProxyMode fails unless kube-proxy reports e2e.proxyMode, the mode the
// report names for the scenario.
func checkProxyMode(ctx context.Context) error {
	got, err := cluster.ReadProxyMode(ctx, localHTTP)
	if err != nil {
		return err
	}
	if got != e2e.proxyMode {
		return fmt.Errorf("kube-proxy reports %s mode on /proxyMode, the suite expects %s (a scenario after k1's switch?)", got, e2e.proxyMode)
	}
	return nil
}

// dnsDNAT is how the cluster DNS Service (kube-dns:dns, UDP 53) is
// DNATed right now, checked against kube-proxy in mode e2e.proxyMode and the
// CoreDNS endpoints ips: ok only when kube-proxy reports that mode, that
// mode's rules dispatch the Service IP to exactly ips, and none of the
// other mode's rules exist (they could DNAT instead). what says what was
// found, for the report either way.
//
// Negative control (same run as c6's, nftables mode): the check told to
// expect iptables failed before the rows and after them ("kube-proxy
// reports nftables, want iptables; iptables DNAT of 10.96.0.10:53/udp goes
// to []; the nftables mode's rules are present: table ip kube-proxy, table
// ip6 kube-proxy"), so the lab failed although its rows ran.
func dnsDNAT(ctx context.Context, ips []string) (ok bool, what string) {
	mode := e2e.proxyMode
	var problems []string
	if got, err := cluster.ReadProxyMode(ctx, localHTTP); err != nil || got != mode {
		problems = append(problems, fmt.Sprintf("kube-proxy reports %q (%v), want %s", got, err, mode))
	}
	d, err := cluster.ReadServiceDNAT(ctx, "", mode, clusterDNSIP, "udp", 53)
	if err != nil {
		problems = append(problems, err.Error())
	}
	want := make([]string, 0, len(ips))
	for _, ip := range ips {
		want = append(want, ip+":53")
	}
	got := slices.Sorted(slices.Values(d.Endpoints))
	slices.Sort(want)
	if !d.Dispatched || len(want) == 0 || !slices.Equal(got, want) {
		problems = append(problems, fmt.Sprintf("%s DNAT of %s:53/udp goes to %v, want the CoreDNS pods %v", mode, clusterDNSIP, got, want))
	}
	if left, err := cluster.ProxyRulesPresent(ctx, "", mode.Other()); err != nil || left != "" {
		problems = append(problems, fmt.Sprintf("the %s mode's rules are present: %q %v", mode.Other(), left, err))
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	how := map[cluster.ProxyMode]string{
		cluster.ProxyIPTables: "iptables nat KUBE-SERVICES → " + d.Chain + " → KUBE-SEP DNAT",
		cluster.ProxyNFTables: "nft table ip kube-proxy, map service-ips → " + d.Chain + " → its dnat (numgen map over the endpoints)",
	}[mode]
	return true, fmt.Sprintf("kube-proxy in %s mode: %s to %v; no %s rules", mode, how, got, mode.Other())
}

// switchProxyMode asks dgcluster to restart kube-proxy in mode and returns
// the seconds the switch took (until kube-proxy served the kubernetes
// Service in the new mode with the old mode's rules gone).
func switchProxyMode(ctx context.Context, mode cluster.ProxyMode) (float64, error) {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e2e.control)
	}}, Timeout: 120 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://dgcluster/proxy-mode", strings.NewReader(string(mode)))
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("dgcluster control %s: %w", e2e.control, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("switch kube-proxy to %s: HTTP %d: %s", mode, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	e2e.proxyMode = mode
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != string(mode) {
		return 0, fmt.Errorf("switch kube-proxy to %s: answer %q", mode, b)
	}
	return strconv.ParseFloat(f[1], 64)
}
