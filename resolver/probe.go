package resolver

import (
	"flag"
	"fmt"
	"io"
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
	if err := fs.Parse(args); err != nil {
		return err
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
