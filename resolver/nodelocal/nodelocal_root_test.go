//go:build root

// These tests change a network namespace they create, so they need root;
// test/nodelocal/run.sh runs them with -tags root.
package nodelocal

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// newNS creates a named namespace (so ip/nft/conntrack can enter it) and
// returns to the caller's namespace; it is deleted when the test ends.
func newNS(t *testing.T) (netns.NsHandle, string) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := fmt.Sprintf("dg-nl-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); _ = netns.DeleteNamed(name) })
	return ns, name
}

func inNS(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestApplyIsIdempotentAndRemoveCleansUp(t *testing.T) {
	ns, name := newNS(t)
	cfg := Config{Addresses: []netip.Addr{netip.MustParseAddr("169.254.20.10"), netip.MustParseAddr("10.96.0.10")}, NoTrack: true, NetNS: ns}
	ap, err := Apply(cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !ap.createdLink {
		t.Error("first Apply should create the link")
	}
	ap2, err := Apply(cfg)
	if err != nil {
		t.Fatalf("second Apply (rolling upgrade) must succeed: %v", err)
	}
	if ap2.createdLink {
		t.Error("second Apply must reuse the link")
	}
	h, _ := netlink.NewHandleAt(ns)
	defer h.Close()
	link, err := h.LinkByName(DefaultInterface)
	if err != nil {
		t.Fatalf("link: %v", err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Error("link is not up")
	}
	addrs, _ := h.AddrList(link, netlink.FAMILY_V4)
	got := map[string]bool{}
	for _, a := range addrs {
		got[a.IPNet.String()] = true
	}
	for _, want := range []string{"169.254.20.10/32", "10.96.0.10/32"} {
		if !got[want] {
			t.Errorf("address %s missing; have %v", want, got)
		}
	}
	rules := inNS(t, name, "nft", "list", "table", "inet", DefaultTable)
	// Two addresses x two protocols x three rules; a reapply must not
	// double them.
	if n := strings.Count(rules, "notrack"); n != 12 {
		t.Errorf("want 12 notrack rules after two Applies, got %d:\n%s", n, rules)
	}
	for _, want := range []string{"ip daddr 169.254.20.10 udp dport 53", "ip saddr 10.96.0.10 tcp sport 53", "hook prerouting priority raw", "hook output priority raw"} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	if err := ap.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := h.LinkByName(DefaultInterface); err == nil {
		t.Error("link still present after Remove")
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "nft", "list", "table", "inet", DefaultTable).CombinedOutput(); err == nil {
		t.Errorf("table still present after Remove:\n%s", out)
	}
}

func TestRefusesToAdoptARealInterface(t *testing.T) {
	ns, name := newNS(t)
	inNS(t, name, "ip", "link", "add", "dnsguard0", "type", "veth", "peer", "name", "dgpeer0")
	_, err := Apply(Config{Addresses: []netip.Addr{netip.MustParseAddr("169.254.20.10")}, NetNS: ns})
	if err == nil || !strings.Contains(err.Error(), "is a veth, not a dummy") {
		t.Fatalf("want refusal to reuse a veth, got %v", err)
	}
}

// TestNoTrackKeepsDNSOutOfConntrack sends UDP to the cache address on the
// DNS port and on a control port; only the control flow may appear in the
// conntrack table.
func TestNoTrackKeepsDNSOutOfConntrack(t *testing.T) {
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("conntrack tool not installed (make deps installs it)")
	}
	ns, name := newNS(t)
	inNS(t, name, "ip", "link", "set", "lo", "up")
	// A rule that uses conntrack makes the kernel track this namespace at
	// all; without it the control flow would be untracked too and the
	// test could not fail.
	inNS(t, name, "nft", "add table inet probe")
	inNS(t, name, "nft", "add chain inet probe in { type filter hook input priority 0 ; }")
	inNS(t, name, "nft", "add rule inet probe in ct state established counter")
	if _, err := Apply(Config{Addresses: []netip.Addr{netip.MustParseAddr("169.254.20.10")}, Port: 5353, NoTrack: true, NetNS: ns}); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, _ := netns.Get()
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	send := func(port int) {
		srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("169.254.20.10"), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cl, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := cl.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := srv.Read(buf); err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
	}
	send(5353)
	send(5354)
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "exec", name, "conntrack", "-L", "-p", "udp").CombinedOutput()
	if !strings.Contains(string(out), "dport=5354") {
		t.Fatalf("control flow not tracked, conntrack inactive in the namespace:\n%s", out)
	}
	if strings.Contains(string(out), "dport=5353") {
		t.Fatalf("DNS flow to the cache was tracked despite NOTRACK:\n%s", out)
	}
}

// An IPv6 node cache address must be usable the moment Apply returns: the
// resolver binds it right after. Negative control (run once on 2026-12-07):
// without IFA_F_NODAD in addAddr, the bind fails with "cannot assign
// requested address" (the address is tentative during DAD), as the node
// cache's start did in test/nodelocal before the fix.
func TestIPv6AddressBindableAtOnce(t *testing.T) {
	ns, name := newNS(t)
	inNS(t, name, "ip", "link", "set", "lo", "up")
	cfg := Config{Addresses: []netip.Addr{netip.MustParseAddr("169.254.20.10"), netip.MustParseAddr("fd00::10")}, NoTrack: true, NetNS: ns}
	ap, err := Apply(cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	defer func() { _ = ap.Remove() }()
	// Bind inside the namespace, as the resolver does right after Apply.
	if err := bindIn(ns, "[fd00::10]:53"); err != nil {
		t.Fatalf("bind right after Apply: %v", err)
	}
	rules := inNS(t, name, "nft", "list", "table", "inet", DefaultTable)
	for _, want := range []string{"ip6 daddr fd00::10 udp dport 53", "ip6 saddr fd00::10 tcp sport 53"} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
}

// bindIn binds a UDP socket to addr inside ns from a locked thread.
func bindIn(ns netns.NsHandle, addr string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() { _ = netns.Set(orig) }()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
