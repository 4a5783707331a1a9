// Command authdns is the benchmark upstream: a small authoritative DNS server
// that synthesizes an answer for any name, so every resolver under test
// forwards to the same server and the cache-miss workload can use unique
// names that all resolve.
//
// A queries get one address from 198.51.100.0/24 and AAAA queries one from
// 2001:db8::/32 (documentation ranges: answers are never contacted), derived
// from a hash of the name so different names get different data. Every other
// type gets NODATA with an SOA whose minimum is the negative TTL.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if err := run(); err != nil {
		slog.Error("authdns", "err", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:5300", "UDP and TCP address to serve on")
	ttl := flag.Uint("ttl", 3600, "TTL of synthesized answers, seconds")
	flag.Parse()

	h := &handler{ttl: uint32(*ttl)}
	udp := &dns.Server{Addr: *listen, Net: "udp", Handler: h, UDPSize: dns.MaxMsgSize}
	tcp := &dns.Server{Addr: *listen, Net: "tcp", Handler: h}
	errc := make(chan error, 2)
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func(s *dns.Server) { errc <- s.ListenAndServe() }(s)
		select {
		case <-started:
		case err := <-errc:
			return fmt.Errorf("listen %s/%s: %w", *listen, s.Net, err)
		case <-time.After(5 * time.Second):
			return fmt.Errorf("listen %s/%s: not started after 5s", *listen, s.Net)
		}
	}
	slog.Info("authdns serving", "listen", *listen, "ttl", *ttl)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(ctx)
	_ = tcp.ShutdownContext(ctx)
	return nil
}

type handler struct{ ttl uint32 }

// ServeDNS answers every query authoritatively from the name alone.
func (h *handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	if len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	sum := fnv.New32a()
	sum.Write([]byte(strings.ToLower(q.Name)))
	v := sum.Sum32()
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: h.ttl}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(198, 51, 100, byte(v)).To4()})
	case dns.TypeAAAA:
		ip := net.ParseIP("2001:db8::")
		ip[12], ip[13], ip[14], ip[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
	default:
		m.Ns = append(m.Ns, &dns.SOA{
			Hdr: dns.RR_Header{Name: zoneOf(q.Name), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns." + zoneOf(q.Name), Mbox: "hostmaster." + zoneOf(q.Name),
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		})
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	_ = w.WriteMsg(m)
}

// zoneOf returns the last two labels of name as the synthesized zone apex.
func zoneOf(name string) string {
	labels := dns.SplitDomainName(name)
	if len(labels) <= 2 {
		return dns.Fqdn(name)
	}
	return dns.Fqdn(strings.Join(labels[len(labels)-2:], "."))
}
