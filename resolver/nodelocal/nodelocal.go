// Package nodelocal prepares a node for dnsguard's node-local cache: a dummy
// interface carrying the link-local listen address (and, optionally, the
// cluster DNS Service IP for transparent interception), and NOTRACK rules so
// that DNS traffic to and from the cache never enters conntrack — the table
// whose insert races drop parallel A/AAAA packets in the first place.
//
// It is the same arrangement NodeLocal DNSCache makes with iptables, done
// through netlink and nftables directly so the container image needs no
// iptables/nft binaries and only the NET_ADMIN capability.
package nodelocal

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults match NodeLocal DNSCache so existing documentation and habits
// carry over.
const (
	DefaultInterface = "dnsguard0"
	DefaultAddress   = "169.254.20.10"
	DefaultTable     = "dnsguard_nodelocal"
)

// Config says what to set up on the node.
type Config struct {
	// Interface is the dummy link to create (or reuse) for the addresses.
	Interface string
	// Addresses are bound on Interface as host routes (/32 or /128).
	Addresses []netip.Addr
	// Port is the DNS port that NOTRACK rules match (53 in production).
	Port uint16
	// NoTrack installs the raw-table rules that exempt the cache's DNS
	// traffic from connection tracking.
	NoTrack bool
	// Table is the nftables table (family inet) owned by this package; it
	// is replaced as a whole so reapplying is idempotent.
	Table string
	// NetNS, when valid, is the network namespace to work in (tests);
	// otherwise the caller's namespace is used.
	NetNS netns.NsHandle
}

// Applied records what Apply changed so Remove undoes exactly that.
type Applied struct {
	// Kind is the link type holding the addresses: "dummy", or "bridge"
	// where the kernel has no dummy driver.
	Kind        string
	cfg         Config
	createdLink bool
}

// hasPorts reports whether any link is enslaved to the bridge br.
func hasPorts(h *rtnl, br link) bool {
	links, err := h.links()
	if err != nil {
		return true // unsure: treat as in use
	}
	for _, l := range links {
		if l.master == br.index {
			return true
		}
	}
	return false
}

func (c *Config) defaults() {
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Port == 0 {
		c.Port = 53
	}
}

// Validate reports a configuration that cannot work, naming the bad value.
func (c Config) Validate() error {
	c.defaults()
	if len(c.Interface) > unix.IFNAMSIZ-1 {
		return fmt.Errorf("interface name %q is longer than %d bytes", c.Interface, unix.IFNAMSIZ-1)
	}
	if len(c.Addresses) == 0 {
		return errors.New("no listen address for the node-local cache")
	}
	for _, a := range c.Addresses {
		if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return fmt.Errorf("address %q cannot be bound on the node-local interface", a)
		}
	}
	return nil
}

func (c Config) handle() (*rtnl, error) { return dialRtnl(c) }

func (c Config) nft() (*nftables.Conn, error) {
	if c.NetNS.IsOpen() {
		return nftables.New(nftables.WithNetNSFd(int(c.NetNS)))
	}
	return nftables.New()
}

// Apply creates the dummy interface if needed, adds the addresses, brings
// the link up and (re)installs the NOTRACK table. It is idempotent: a second
// instance during a rolling upgrade finds everything in place.
func Apply(cfg Config) (*Applied, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h, err := cfg.handle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()

	ap := &Applied{cfg: cfg}
	l, err := h.linkByName(cfg.Interface)
	switch {
	case errors.Is(err, errNoLink):
		ap.Kind = "dummy"
		err := h.addLink(cfg.Interface, "dummy")
		if errors.Is(err, unix.EOPNOTSUPP) {
			// Kernels built without CONFIG_DUMMY (some microVM kernels,
			// this project's CI among them) still have bridges; a bridge
			// with no ports holds local addresses just as well.
			ap.Kind = "bridge"
			err = h.addLink(cfg.Interface, "bridge")
		}
		if err != nil {
			return nil, fmt.Errorf("create %s interface %s: %w", ap.Kind, cfg.Interface, err)
		}
		ap.createdLink = true
		if l, err = h.linkByName(cfg.Interface); err != nil {
			return nil, fmt.Errorf("find new interface %s: %w", cfg.Interface, err)
		}
	case err != nil:
		return nil, fmt.Errorf("look up interface %s: %w", cfg.Interface, err)
	case l.kind == "dummy" || (l.kind == "bridge" && !hasPorts(h, l)):
		ap.Kind = l.kind
	default:
		kind := l.kind
		if kind == "" {
			kind = "device"
		}
		// Refuse to hijack a real interface that happens to have the name.
		return nil, fmt.Errorf("interface %s exists and is a %s, not a dummy (or empty bridge)", cfg.Interface, kind)
	}
	for _, a := range cfg.Addresses {
		if err := h.addAddr(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("add %s to %s: %w", a, cfg.Interface, err)
		}
	}
	if err := h.setUp(l); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", cfg.Interface, err)
	}
	if cfg.NoTrack {
		if err := installNoTrack(cfg); err != nil {
			return nil, err
		}
	}
	return ap, nil
}

// Remove deletes the NOTRACK table and the addresses/interface Apply set up.
// Callers skip it when another instance still serves on the node (see the
// node mode's shutdown), so an upgrade does not pull the rug from under it.
func (a *Applied) Remove() error {
	var errs []error
	if a.cfg.NoTrack {
		if err := removeTable(a.cfg); err != nil {
			errs = append(errs, err)
		}
	}
	h, err := a.cfg.handle()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("netlink handle: %w", err))...)
	}
	defer h.Close()
	l, err := h.linkByName(a.cfg.Interface)
	if err != nil {
		if !errors.Is(err, errNoLink) {
			errs = append(errs, fmt.Errorf("look up %s: %w", a.cfg.Interface, err))
		}
		return errors.Join(errs...)
	}
	// The interface exists only for our addresses, whoever created it: a
	// previous instance that crashed leaves it behind and we adopt it.
	if err := h.delLink(l); err != nil {
		errs = append(errs, fmt.Errorf("delete %s: %w", a.cfg.Interface, err))
	}
	return errors.Join(errs...)
}

func removeTable(cfg Config) error {
	c, err := cfg.nft()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: cfg.Table})
	if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("delete nftables table %s: %w", cfg.Table, err)
	}
	return nil
}

// installNoTrack replaces table inet <Table> with two raw-priority chains:
// prerouting matches queries arriving for the cache's addresses, output
// matches the cache's replies. Both directions must be exempt or conntrack
// creates the entry on the reply path.
func installNoTrack(cfg Config) error {
	if err := removeTable(cfg); err != nil {
		return err
	}
	c, err := cfg.nft()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: cfg.Table})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw})
	for _, a := range cfg.Addresses {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			// Queries to the cache arrive on prerouting from pods and on
			// output from host-network processes; replies leave on output.
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: match(a, true, proto, cfg.Port)})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: match(a, true, proto, cfg.Port)})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: match(a, false, proto, cfg.Port)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install NOTRACK rules in table inet %s: %w", cfg.Table, err)
	}
	return nil
}

// match builds "<family> {daddr|saddr} A <proto> {dport|sport} P notrack".
func match(a netip.Addr, toAddr bool, proto byte, port uint16) []expr.Any {
	family := byte(unix.NFPROTO_IPV4)
	addrOff, addrLen := uint32(16), uint32(4) // IPv4 daddr
	if !toAddr {
		addrOff = 12
	}
	if a.Is6() {
		family = unix.NFPROTO_IPV6
		addrOff, addrLen = 24, 16
		if !toAddr {
			addrOff = 8
		}
	}
	portOff := uint32(2) // dport
	if !toAddr {
		portOff = 0
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Counter{},
		&expr.Notrack{},
	}
}
