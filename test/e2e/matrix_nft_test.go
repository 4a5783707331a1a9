//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// The fault matrix's kernel faults: one nftables table of its own in the
// node's network namespace (this binary runs in it), loaded for one fault
// and deleted after it; the run checks it is gone.
const (
	faultTable = "dgfaults"
	upstreamIP = "10.200.0.1" // the node's upstream (dnsmasq), test/cluster
	podCIDR    = "10.244.0.0/16"
)

// countRule counts, in the input hook, every packet the node's upstream
// receives (UDP and TCP): CoreDNS's queries (routed from the bridge) and
// the node cache's (hostNetwork, through lo) both end there. Every fault's
// table has it first, so each fault's window has its upstream packet count
// (a rule after it may still drop the packet: it counts what was sent).
func countRule() string {
	return fmt.Sprintf(`ip daddr %s meta l4proto { udp, tcp } th dport 53 counter comment "upstream"`, upstreamIP)
}

// countRules is a table that only counts (faults d and e).
func countRules() string {
	return fmt.Sprintf(`table ip %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		%[2]s
	}
}
`, faultTable, countRule())
}

// lossRules: 2 % of the UDP DNS packets between client pods (sidecars
// included) and the cluster DNS dropped at random, in both directions, and
// 2 % of the node cache's UDP packets to and from the node's upstream (its
// path for every name outside the cluster domain; without it node-local
// pods would see no loss but on their fallback). At priority -300 (raw) a
// request still has the Service address it was sent to, and a CoreDNS
// reply still has the CoreDNS pod's source (kube-proxy's reverse NAT comes
// in postrouting). The node cache is hostNetwork: its packets to and from
// 10.200.0.1 come in on lo, CoreDNS's on the bridge, which this leaves
// alone.
func lossRules() string {
	return fmt.Sprintf(`table ip %[1]s {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip saddr %[2]s ip daddr %[3]s udp dport 53 numgen random mod 100 < 2 counter drop comment "request"
		ip saddr %[2]s ip daddr %[2]s udp sport 53 numgen random mod 100 < 2 counter drop comment "reply"
	}
	chain in {
		type filter hook input priority 0; policy accept;
		%[5]s
		iifname "lo" ip daddr %[4]s udp dport 53 numgen random mod 100 < 2 counter drop comment "cache-request"
		iifname "lo" ip saddr %[4]s udp sport 53 numgen random mod 100 < 2 counter drop comment "cache-reply"
	}
}
`, faultTable, podCIDR, clusterDNSIP, upstreamIP, countRule())
}

// rateRules: every packet to the node's upstream counted, UDP above 1,024
// packets/s dropped (AWS's per-interface cap on the VPC resolver).
func rateRules() string {
	return fmt.Sprintf(`table ip %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		%[3]s
		ip daddr %[2]s udp dport 53 limit rate over 1024/second counter drop comment "limited"
	}
}
`, faultTable, upstreamIP, countRule())
}

// outageRules: the upstream unreachable, UDP and TCP.
func outageRules() string {
	return fmt.Sprintf(`table ip %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		%[3]s
		ip daddr %[2]s meta l4proto { udp, tcp } th dport 53 counter drop comment "outage"
	}
}
`, faultTable, upstreamIP, countRule())
}

func loadFault(ctx context.Context, rules string) error {
	_ = removeFault(ctx)
	if _, err := (lab.Node{}).Run(ctx, rules, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("load nft table %s: %w", faultTable, err)
	}
	return nil
}

func removeFault(ctx context.Context) error {
	_, err := (lab.Node{}).Run(ctx, "", "nft", "delete", "table", "ip", faultTable)
	return err
}

func faultPresent(ctx context.Context) bool {
	_, err := (lab.Node{}).Run(ctx, "", "nft", "list", "table", "ip", faultTable)
	return err == nil
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ .*comment "([^"]+)"`)

// faultCounters reads the table's counters by rule comment.
func faultCounters(ctx context.Context) (map[string]int, error) {
	out, err := (lab.Node{}).Run(ctx, "", "nft", "list", "table", "ip", faultTable)
	if err != nil {
		return nil, err
	}
	got := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if m := counterRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			got[m[2]] += n
		}
	}
	return got, nil
}
