package nodelocal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A few rtnetlink requests on github.com/mdlayher/netlink (which nftables
// already links in) instead of a full netlink library: the resolver ships
// as one small static binary (7 MiB budget), and a general-purpose
// netlink package alone added more than half a MiB.

// rtnl is a route netlink connection, optionally in another namespace.
type rtnl struct{ c *netlink.Conn }

// link is what the package needs to know about an interface.
type link struct {
	index  int32
	flags  uint32
	kind   string // IFLA_INFO_KIND: "dummy", "bridge", "veth", "" (none)
	master int32
}

func dialRtnl(cfg Config) (*rtnl, error) {
	nc := &netlink.Config{}
	if cfg.NetNS.IsOpen() {
		nc.NetNS = int(cfg.NetNS)
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nc)
	if err != nil {
		return nil, err
	}
	return &rtnl{c: c}, nil
}

func (r *rtnl) Close() error { return r.c.Close() }

const ifinfomsgLen = 16

// ifinfomsg encodes struct ifinfomsg (family, type, index, flags, change).
func ifinfomsg(index int32, flags, change uint32) []byte {
	b := make([]byte, ifinfomsgLen)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

func (r *rtnl) do(typ uint16, flags netlink.HeaderFlags, data []byte) ([]netlink.Message, error) {
	return r.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request | flags},
		Data:   data,
	})
}

func parseLink(m netlink.Message) (link, error) {
	if len(m.Data) < ifinfomsgLen {
		return link{}, errors.New("short ifinfomsg")
	}
	l := link{
		index: int32(binary.NativeEndian.Uint32(m.Data[4:])),
		flags: binary.NativeEndian.Uint32(m.Data[8:]),
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[ifinfomsgLen:])
	if err != nil {
		return l, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_MASTER:
			l.master = int32(ad.Uint32())
		case unix.IFLA_LINKINFO:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_KIND {
						l.kind = nad.String()
					}
				}
				return nil
			})
		}
	}
	return l, ad.Err()
}

// errNoLink is returned by linkByName for a missing interface.
var errNoLink = errors.New("no such interface")

func (r *rtnl) linkByName(name string) (link, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return link{}, err
	}
	msgs, err := r.do(unix.RTM_GETLINK, 0, append(ifinfomsg(0, 0, 0), attrs...))
	if errors.Is(err, unix.ENODEV) {
		return link{}, errNoLink
	}
	if err != nil {
		return link{}, err
	}
	if len(msgs) == 0 {
		return link{}, errNoLink
	}
	return parseLink(msgs[0])
}

func (r *rtnl) links() ([]link, error) {
	msgs, err := r.do(unix.RTM_GETLINK, netlink.Dump, ifinfomsg(0, 0, 0))
	if err != nil {
		return nil, err
	}
	out := make([]link, 0, len(msgs))
	for _, m := range msgs {
		if l, err := parseLink(m); err == nil {
			out = append(out, l)
		}
	}
	return out, nil
}

func (r *rtnl) addLink(name, kind string) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
		nae.String(unix.IFLA_INFO_KIND, kind)
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = r.do(unix.RTM_NEWLINK, netlink.Acknowledge|netlink.Create|netlink.Excl, append(ifinfomsg(0, 0, 0), attrs...))
	return err
}

func (r *rtnl) setUp(l link) error {
	_, err := r.do(unix.RTM_NEWLINK, netlink.Acknowledge, ifinfomsg(l.index, unix.IFF_UP, unix.IFF_UP))
	return err
}

func (r *rtnl) delLink(l link) error {
	_, err := r.do(unix.RTM_DELLINK, netlink.Acknowledge, ifinfomsg(l.index, 0, 0))
	return err
}

// addAddr adds a host address (/32 or /128) to the link.
func (r *rtnl) addAddr(l link, a netip.Addr) error {
	family, bits, flags := byte(unix.AF_INET), byte(32), byte(0)
	if a.Is6() {
		// Without NODAD an IPv6 address stays tentative for about a
		// second of duplicate address detection, and binding it fails
		// with EADDRNOTAVAIL: the node cache would not start. The
		// address is the node's own on a dummy interface; there is no
		// link to detect duplicates on.
		family, bits, flags = unix.AF_INET6, 128, unix.IFA_F_NODAD
	}
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	hdr := make([]byte, 8)
	hdr[0], hdr[1], hdr[2], hdr[3] = family, bits, flags, unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(hdr[4:], uint32(l.index))
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.IFA_LOCAL, a.AsSlice())
	ae.Bytes(unix.IFA_ADDRESS, a.AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = r.do(unix.RTM_NEWADDR, netlink.Acknowledge|netlink.Create|netlink.Excl, append(hdr, attrs...))
	if err != nil {
		return fmt.Errorf("RTM_NEWADDR: %w", err)
	}
	return nil
}
