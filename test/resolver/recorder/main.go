// Command recorder is the recording upstream of make resolver-test: a UDP
// DNS relay in front of a real server (dnsmasq) that writes one line per
// query it receives, "PORT QTYPE NAME" (the source port the resolver used),
// and delays the answers to names starting with "slow" by --slow-delay, to
// play an upstream that always answers late.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5301", "UDP address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:5300", "real DNS server to relay to")
	logFile := flag.String("log", "recorder.log", "file of received queries, one \"PORT QTYPE NAME\" a line")
	slowDelay := flag.Duration("slow-delay", 1500*time.Millisecond, "delay of answers to names starting with \"slow\"")
	flag.Parse()
	if err := run(*listen, *upstream, *logFile, *slowDelay); err != nil {
		slog.Error("recorder", "err", err)
		os.Exit(1)
	}
}

func run(listen, upstream, logFile string, slowDelay time.Duration) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	out, err := os.Create(logFile)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	var mu sync.Mutex
	client := &dns.Client{Timeout: 5 * time.Second, UDPSize: 4096}
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		req := new(dns.Msg)
		if err := req.Unpack(buf[:n]); err != nil || len(req.Question) != 1 {
			continue
		}
		q := req.Question[0]
		mu.Lock()
		fmt.Fprintf(out, "%d %s %s\n", from.(*net.UDPAddr).Port, dns.TypeToString[q.Qtype], strings.ToLower(q.Name))
		out.Sync()
		mu.Unlock()
		go func() {
			if strings.HasPrefix(strings.ToLower(q.Name), "slow") {
				time.Sleep(slowDelay)
			}
			r, _, err := client.Exchange(req, upstream)
			if err != nil {
				return
			}
			b, err := r.Pack()
			if err != nil {
				return
			}
			pc.WriteTo(b, from)
		}()
	}
}
