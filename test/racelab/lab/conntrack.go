package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ConntrackStats sums the node namespace's conntrack statistics
// (/proc/net/stat/nf_conntrack: a header, then one line of hex counters per
// CPU; /proc/net follows the reader's network namespace, hence cat in the
// node).
func ConntrackStats(ctx context.Context, n Node) (map[string]int64, error) {
	out, err := n.Run(ctx, "", "cat", "/proc/net/stat/nf_conntrack")
	if err != nil {
		return nil, fmt.Errorf("conntrack statistics: %w", err)
	}
	return parseConntrackStats(out)
}

func parseConntrackStats(text string) (map[string]int64, error) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("conntrack statistics: want a header and a line per CPU, got %q", text)
	}
	head := strings.Fields(lines[0])
	sum := map[string]int64{}
	for _, line := range lines[1:] {
		for i, f := range strings.Fields(line) {
			v, err := strconv.ParseInt(f, 16, 64)
			if err != nil {
				return nil, fmt.Errorf("conntrack statistics: %q is not hex", f)
			}
			// entries is a gauge (the same table on every line), not a sum.
			if i < len(head) && head[i] != "entries" {
				sum[head[i]] += v
			}
		}
	}
	return sum, nil
}

// Spread counts the node's UDP conntrack entries for service by the DNS
// endpoint DNAT chose for them (the reply direction's source).
func Spread(ctx context.Context, n Node, service string, endpoints []string) (map[string]int, error) {
	out, err := n.Run(ctx, "", "conntrack", "-L", "-p", "udp", "--orig-dst", service)
	if err != nil {
		return nil, err
	}
	return parseSpread(out, endpoints), nil
}

// parseSpread counts conntrack -L lines by the reply direction's source.
func parseSpread(out string, endpoints []string) map[string]int {
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		orig := strings.Index(line, "dport=53")
		for _, ip := range endpoints {
			if i := strings.Index(line, "src="+ip+" "); orig >= 0 && i > orig {
				counts[ip]++
			}
		}
	}
	return counts
}
