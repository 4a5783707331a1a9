package resolver

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Probe implements `resolver probe --server=ADDR [--timeout=1s]`: it asks
// the server for "id.server. CH TXT", which the resolver answers itself
// (REFUSED) without touching upstreams, and succeeds when any DNS reply
// with the right ID arrives. Used as the sidecar's exec startup and
// readiness probe.
func Probe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resolver probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "127.0.0.1:53", "DNS server `address` to probe")
	timeout := fs.Duration("timeout", time.Second, "how long to wait for a reply")
	tcp := fs.Bool("tcp", false, "probe over TCP instead of UDP")
	readyz := fs.String("readyz", "", "instead, GET http://`HOST:PORT`/readyz (the --health-listen address) and succeed on 200; for hostNetwork pods, whose kubelet httpGet probes cannot reach loopback")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *readyz != "" {
		return probeReadyz(*readyz, *timeout, stdout)
	}
	if _, err := parseHostPort(*server, 53); err != nil {
		return fmt.Errorf("invalid --server=%s: %w", *server, err)
	}
	addr := *server
	if ap, err := parseHostPort(*server, 53); err == nil {
		addr = ap.String()
	}
	m := new(dns.Msg)
	m.SetQuestion("id.server.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	c := &dns.Client{Timeout: *timeout}
	if *tcp {
		c.Net = "tcp"
	}
	r, rtt, err := c.Exchange(m, addr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "%s answered %s in %v\n", addr, dns.RcodeToString[r.Rcode], rtt.Round(time.Microsecond))
	return nil
}

// probeReadyz asks the health endpoint with a bare HTTP/1.0 request (the
// binary carries no HTTP client) and wants status 200.
func probeReadyz(addr string, timeout time.Duration, stdout io.Writer) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return fmt.Errorf("readyz %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return fmt.Errorf("readyz %s: %w", addr, err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("readyz %s: %w", addr, err)
	}
	status = strings.TrimSpace(status)
	if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
		return fmt.Errorf("readyz %s: %s", addr, status)
	}
	fmt.Fprintf(stdout, "%s: %s\n", addr, status)
	return nil
}
