package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsguard/dnsguard/resolver"
	"github.com/dnsguard/dnsguard/resolver/nodelocal"
)

// setupNode creates the interface, addresses and NOTRACK rules node mode
// answers on. It needs CAP_NET_ADMIN and says so when it is missing,
// rather than leaving the operator with a bare EPERM.
func setupNode(cfg resolver.Config, log *slog.Logger) (*nodelocal.Applied, error) {
	port := uint16(53)
	if la := cfg.ListenAddrs(); len(la) > 0 {
		port = la[0].Port()
	}
	ap, err := nodelocal.Apply(nodelocal.Config{
		Interface: cfg.NodeLocalInterface,
		Addresses: cfg.NodeAddrs(),
		Port:      port,
		NoTrack:   cfg.NoTrack,
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("node mode needs the NET_ADMIN capability to create interface %s and its NOTRACK rules: %w", cfg.NodeLocalInterface, err)
		}
		return nil, fmt.Errorf("node-local setup: %w", err)
	}
	log.Info("node-local interface ready", "interface", cfg.NodeLocalInterface, "kind", ap.Kind,
		"addresses", cfg.NodeAddrs(), "notrack", cfg.NoTrack)
	return ap, nil
}

// teardownNode removes the interface and rules unless another instance
// (the next version during a rolling upgrade, bound with SO_REUSEPORT)
// still answers on the node-local address: this instance's listeners are
// closed by now, so any answer comes from someone else, and pulling the
// address would cut that instance off.
func teardownNode(cfg resolver.Config, ap *nodelocal.Applied, log *slog.Logger) {
	for _, a := range cfg.ListenAddrs() {
		if answers(a) {
			log.Info("another instance answers on the node-local address; leaving interface and rules in place", "addr", a.String())
			return
		}
	}
	if err := ap.Remove(); err != nil {
		log.Warn("node-local cleanup", "err", err)
		return
	}
	log.Info("node-local interface and rules removed", "interface", cfg.NodeLocalInterface)
}

// answers reports whether a DNS server replies at a (the CHAOS query the
// resolver answers itself, twice with a short timeout so one lost
// datagram does not cause a wrong teardown).
func answers(a netip.AddrPort) bool {
	m := new(dns.Msg)
	m.SetQuestion("id.server.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	for range 2 {
		if _, _, err := c.Exchange(m, a.String()); err == nil {
			return true
		}
	}
	return false
}
