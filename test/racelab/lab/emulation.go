package lab

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Emulation is the conntrack insert_failed the lab emulates on the node,
// written once for both backends: an nftables table of the lab's own in the
// node's network namespace with one rule per client (the netns backend
// reloads the table for every row and has one client at a time; the cluster
// backend adds one rule per client pod as soon as the pod has its IP, so the
// pods of one or several configurations run side by side and each counts
// only its own packets).
//
// In the kernel, glibc's and musl's A and AAAA leave one UDP socket back to
// back and share the 5-tuple. If the two packets are processed on two CPUs at
// once, both create an unconfirmed conntrack entry and the second to reach
// __nf_conntrack_confirm finds the clash, counts insert_failed and is
// dropped; the client waits for the lost answer until its timeout. A packet
// that would lose that race arrives while the entry its twin created is
// confirmed but has not seen a reply: the rule selects exactly those
// ("colliding packets") and drops 1 in Every of them, counting from the
// first, so each row's outcome is a matter of counting, not of luck.
// Retransmissions after an answer pass (the entry has seen a reply), as in
// the kernel.
//
// The chain runs at prerouting priority -150: after conntrack (-200), so the
// entry's state is known, and before DNAT (-100). The rule matches the
// entry's original direction (source the client, destination the DNS
// Service IP, port 53), which is what kube-proxy (or the netns lab's
// stand-in) DNATs to one of the DNS endpoints.
type Emulation struct {
	Node Node
	// Table is the nft table's name (family ip).
	Table string
	// Service is the DNS Service IP whose flows the rules watch.
	Service string
	// Every: drop every Every-th colliding packet of a client.
	Every int
}

// Reset (re)creates the table without rules: counters and numgen
// sequences start afresh.
func (e *Emulation) Reset(ctx context.Context) error {
	_ = e.Remove(ctx)
	if _, err := e.Node.Run(ctx, e.TableDef(), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("load the emulation table %s: %w", e.Table, err)
	}
	return nil
}

// Remove deletes the table; it must never outlive the lab (it drops DNS
// packets).
func (e *Emulation) Remove(ctx context.Context) error {
	_, err := e.Node.Run(ctx, "", "nft", "delete", "table", "ip", e.Table)
	return err
}

// Present reports whether the table exists.
func (e *Emulation) Present(ctx context.Context) bool {
	_, err := e.Node.Run(ctx, "", "nft", "list", "table", "ip", e.Table)
	return err == nil
}

// TableDef is the empty table. The output chain (same priority, after
// conntrack's -200 and before NAT's -100) sees the node's own packets: a
// hostNetwork node cache's queries to its upstreams.
func (e *Emulation) TableDef() string {
	return fmt.Sprintf(`table ip %s {
  chain prerouting {
    type filter hook prerouting priority -150; policy accept;
  }
  chain output {
    type filter hook output priority -150; policy accept;
  }
}
`, e.Table)
}

// HostRule is the script adding the emulation on the node's own UDP
// queries to port 53 at any of daddrs (the node cache's upstreams), with
// the counters host-collisions and host-drops: the same drop as Rule, on
// the path the node cache's queries take. A resolver that sent its A and
// AAAA from one socket at once would collide there and stall.
func (e *Emulation) HostRule(daddrs []string) string {
	return fmt.Sprintf(`add counter ip %[1]s host-collisions
add counter ip %[1]s host-drops
add rule ip %[1]s output meta l4proto udp ct original ip daddr { %[2]s } ct original proto-dst 53 ct direction original ct status & (confirmed | seen-reply) == confirmed counter name "host-collisions" numgen inc mod %[3]d 0 counter name "host-drops" drop
`, e.Table, strings.Join(daddrs, ", "), e.Every)
}

// AddHost adds HostRule.
func (e *Emulation) AddHost(ctx context.Context, daddrs []string) error {
	if _, err := e.Node.Run(ctx, e.HostRule(daddrs), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("add the drop rule for the node's own queries to %v: %w", daddrs, err)
	}
	return nil
}

// HostCounters reads the node's own colliding and dropped packets.
func (e *Emulation) HostCounters(ctx context.Context) (collisions, drops int, err error) {
	if collisions, err = e.counter(ctx, "host-collisions"); err != nil {
		return 0, 0, err
	}
	drops, err = e.counter(ctx, "host-drops")
	return collisions, drops, err
}

// BlockRule is the script of a negative control: every packet from saddr
// (any source when empty) to daddr is dropped, counted in blocked<i>. A
// control row uses it to make dnsguard's component unable to answer.
func (e *Emulation) BlockRule(i int, saddr, daddr string) string {
	from := ""
	if saddr != "" {
		from = "ip saddr " + saddr + " "
	}
	return fmt.Sprintf(`add counter ip %[1]s blocked%[2]d
add rule ip %[1]s prerouting %[3]sip daddr %[4]s counter name "blocked%[2]d" drop
`, e.Table, i, from, daddr)
}

// Block adds BlockRule.
func (e *Emulation) Block(ctx context.Context, i int, saddr, daddr string) error {
	if _, err := e.Node.Run(ctx, e.BlockRule(i, saddr, daddr), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("add the block rule %s → %s: %w", saddr, daddr, err)
	}
	return nil
}

// Blocked reads the packets block rule i dropped.
func (e *Emulation) Blocked(ctx context.Context, i int) (int, error) {
	return e.counter(ctx, "blocked"+strconv.Itoa(i))
}

// Rule is the script adding client i's drop rule for source address ip, with
// its counters collisions<i> and drops<i>.
func (e *Emulation) Rule(i int, ip string) string {
	return fmt.Sprintf(`add counter ip %[1]s collisions%[2]d
add counter ip %[1]s drops%[2]d
add rule ip %[1]s prerouting ct original ip saddr %[3]s meta l4proto udp ct original ip daddr %[4]s ct original proto-dst 53 ct direction original ct status & (confirmed | seen-reply) == confirmed counter name "collisions%[2]d" numgen inc mod %[5]d 0 counter name "drops%[2]d" drop
`, e.Table, i, ip, e.Service, e.Every)
}

// AddClient adds client i's rule.
func (e *Emulation) AddClient(ctx context.Context, i int, ip string) error {
	if _, err := e.Node.Run(ctx, e.Rule(i, ip), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("add the drop rule for %s: %w", ip, err)
	}
	return nil
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

// counter reads the packets of a named counter of the table.
func (e *Emulation) counter(ctx context.Context, name string) (int, error) {
	out, err := e.Node.Run(ctx, "", "nft", "list", "counter", "ip", e.Table, name)
	if err != nil {
		return 0, err
	}
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("nft list counter %s: no packets in %q", name, out)
	}
	return strconv.Atoi(m[1])
}

// Counters reads client i's colliding and dropped packets.
func (e *Emulation) Counters(ctx context.Context, i int) (collisions, drops int, err error) {
	if collisions, err = e.counter(ctx, "collisions"+strconv.Itoa(i)); err != nil {
		return 0, 0, err
	}
	drops, err = e.counter(ctx, "drops"+strconv.Itoa(i))
	return collisions, drops, err
}

// Listing is the table as nft prints it, for the report.
func (e *Emulation) Listing(ctx context.Context) (string, error) {
	return e.Node.Run(ctx, "", "nft", "list", "table", "ip", e.Table)
}
