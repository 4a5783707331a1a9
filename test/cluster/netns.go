package cluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// netnsHolder starts the process that owns the node's network namespace.
// Using a process rather than `ip netns add` leaves no file under /run/netns
// behind: the namespace disappears when its last process does.
func netnsHolder(logPath string) (*proc, string, error) {
	p, err := startWith("netns", harness.Options{Log: logPath, Group: true, Cloneflags: syscall.CLONE_NEWNET}, "sleep", "infinity")
	if err != nil {
		return nil, "", fmt.Errorf("netns holder: %w", err)
	}
	return p, "/proc/" + strconv.Itoa(p.PID()) + "/ns/net", nil
}

// inNetns runs a short command inside the namespace and returns its output.
func inNetns(netns string, argv ...string) (string, error) {
	full := append([]string{"--net=" + netns, "--"}, argv...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// setupNetns gives the namespace its node address and the per-namespace
// settings a node needs. Two veth ends, both inside: dg0 carries the node IP
// (kubelet, API server, kube-proxy), dg1 the node's upstream DNS; the
// default route points at dg1 so kubelet and kube-proxy find a "host
// interface" without any path out of the namespace.
func setupNetns(netns string) error {
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "dg0", "type", "veth", "peer", "name", "dg1"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", "dg0"},
		{"ip", "addr", "add", UpstreamIP + "/24", "dev", "dg1"},
		{"ip", "link", "set", "dg0", "up"},
		{"ip", "link", "set", "dg1", "up"},
		{"ip", "route", "add", "default", "via", UpstreamIP, "dev", "dg0", "metric", "100"},
	}
	for _, s := range steps {
		if _, err := inNetns(netns, s...); err != nil {
			return fmt.Errorf("node namespace: %w", err)
		}
	}
	// Per-namespace settings: forwarding for pod traffic, bridged pod ->
	// ClusterIP -> pod traffic through iptables (kube-proxy's DNAT), and
	// loopback NodePorts off (nothing uses them).
	for k, v := range map[string]string{
		"net.ipv4.ip_forward":                 "1",
		"net.bridge.bridge-nf-call-iptables":  "1",
		"net.bridge.bridge-nf-call-ip6tables": "1",
		"net.ipv4.conf.all.rp_filter":         "0",
	} {
		if _, err := inNetns(netns, "sh", "-c", fmt.Sprintf("echo %s > %s", v, sysctlPath(k))); err != nil {
			return fmt.Errorf("node namespace sysctl %s: %w", k, err)
		}
	}
	return nil
}

// netnsDial returns a dial function whose sockets are created inside the
// namespace: the socket() call runs on an OS thread switched into it, and a
// socket keeps its namespace for life, so the connection then works from any
// goroutine. The thread is never switched back; it exits with its goroutine
// (a locked goroutine that returns takes its thread with it).
func netnsDial(netnsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			ns, err := netns.GetFromPath(netnsPath)
			if err != nil {
				ch <- result{nil, fmt.Errorf("open %s: %w", netnsPath, err)}
				return
			}
			defer ns.Close()
			if err := netns.Set(ns); err != nil {
				ch <- result{nil, fmt.Errorf("enter %s: %w", netnsPath, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
