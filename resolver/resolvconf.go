package resolver

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// EnvUpstreams names the environment variable with upstreams (comma or
// space separated), used when neither a flag nor the --config file sets
// any.
const EnvUpstreams = "DNSGUARD_UPSTREAMS"

// ResolveUpstreams is the one step that looks outside the configuration
// for upstreams, when none is configured: first $DNSGUARD_UPSTREAMS (read
// with getenv), then the nameservers of the ResolvConf file, skipping the
// resolver's own listen addresses so it never asks itself. With upstreams
// configured it does nothing.
func (c *Config) ResolveUpstreams(getenv func(string) string) error {
	if len(c.Upstreams) > 0 {
		return nil
	}
	if v := getenv(EnvUpstreams); v != "" {
		c.Upstreams = splitList(v)
		return nil
	}
	// Listen errors are Validate's to report; here they only mean fewer
	// addresses to skip.
	_, self, _, _ := c.listeners()
	ups, err := resolvConfUpstreams(c.ResolvConf, self)
	if err != nil {
		return badSetting("resolv-conf", "resolvConf", c.ResolvConf, err.Error())
	}
	if len(ups) == 0 {
		return badSetting("upstream", "upstreams", "", "none given and "+c.ResolvConf+" has no usable nameserver")
	}
	for _, a := range ups {
		c.Upstreams = append(c.Upstreams, a.String())
	}
	return nil
}

// resolvConfUpstreams reads nameserver lines, skipping the resolver's own
// addresses.
func resolvConfUpstreams(path string, self []netip.AddrPort) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(strings.SplitN(fields[1], "%", 2)[0])
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if isSelf(self, ap) {
			continue
		}
		out = append(out, ap)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}
