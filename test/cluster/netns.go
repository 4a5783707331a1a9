package cluster

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

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
// interface" without any path out of the namespace. dualStack adds the
// IPv6 half (ipfamily.go).
func setupNetns(netns string, dualStack bool) error {
	var v6Steps [][]string
	sysctls := map[string]string{
		"net.ipv4.ip_forward":                 "1",
		"net.bridge.bridge-nf-call-iptables":  "1",
		"net.bridge.bridge-nf-call-ip6tables": "1",
		"net.ipv4.conf.all.rp_filter":         "0",
	}
	if dualStack {
		var v6Sysctls map[string]string
		v6Steps, v6Sysctls = ipv6NetnsSteps()
		maps.Copy(sysctls, v6Sysctls)
	}
	// Per-namespace settings first (IPv6 must be on before its addresses
	// go on): forwarding for pod traffic, bridged pod -> ClusterIP -> pod
	// traffic through iptables and ip6tables (kube-proxy's DNAT), and
	// loopback NodePorts off (nothing uses them).
	for k, v := range sysctls {
		if _, err := inNetns(netns, "sh", "-c", fmt.Sprintf("echo %s > %s", v, sysctlPath(k))); err != nil {
			return fmt.Errorf("node namespace sysctl %s: %w", k, err)
		}
	}
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "dg0", "type", "veth", "peer", "name", "dg1"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", "dg0"},
		{"ip", "addr", "add", UpstreamIP + "/24", "dev", "dg1"},
		{"ip", "link", "set", "dg0", "up"},
		{"ip", "link", "set", "dg1", "up"},
		{"ip", "route", "add", "default", "via", UpstreamIP, "dev", "dg0", "metric", "100"},
	}
	for _, s := range append(steps, v6Steps...) {
		if _, err := inNetns(netns, s...); err != nil {
			return fmt.Errorf("node namespace: %w", err)
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
		// The thread goes back to the original namespace before it is
		// unlocked. Letting it exit while locked is not enough: a goroutine
		// that happens to run on the main thread cannot end it, Go wedges
		// that thread instead, and it would stay inside the node's
		// namespace, which teardown then rightly reports as kept alive
		// (seen in make compat-test). Only if switching back fails does the
		// thread stay locked and go with its goroutine.
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("current namespace: %w", err)}
				return
			}
			defer orig.Close()
			ns, err := netns.GetFromPath(netnsPath)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("open %s: %w", netnsPath, err)}
				return
			}
			defer ns.Close()
			if err := netns.Set(ns); err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("enter %s: %w", netnsPath, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// NetnsID identifies the node's network namespace across the run and after
// it: the inode of its nsfs file (what /proc/PID/ns/net links to, reused
// by the kernel once the namespace is freed) and its cookie
// (SO_NETNS_COOKIE, never reused while the machine runs), so a namespace
// someone else created later with the same inode is never mistaken for it.
type NetnsID struct {
	Inode  uint64 `json:"inode"`
	Cookie uint64 `json:"cookie"`
}

// netnsIdentify reads the ID of the namespace that path (a /proc/PID/ns/net,
// /proc/PID/fd/N or a bind mount of one) refers to.
func netnsIdentify(path string) (NetnsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return NetnsID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	cookie, err := netnsCookie(path)
	if err != nil {
		return NetnsID{}, err
	}
	return NetnsID{Inode: st.Ino, Cookie: cookie}, nil
}

// netnsCookie makes a socket inside the namespace at path and reads the
// namespace's cookie from it. The thread is switched back before the
// answer is sent, so no thread of this process is left inside a namespace
// that netnsHolders then counts as kept alive; if switching back fails the
// thread stays locked and exits with its goroutine.
func netnsCookie(path string) (uint64, error) {
	type result struct {
		cookie uint64
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{0, fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{0, fmt.Errorf("open %s: %w", path, err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{0, fmt.Errorf("enter %s: %w", path, err)}
			return
		}
		var r result
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			r.err = fmt.Errorf("socket in %s: %w", path, err)
		} else {
			if r.cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE); err != nil {
				r.err = fmt.Errorf("SO_NETNS_COOKIE in %s: %w", path, err)
			}
			unix.Close(fd)
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- r
	}()
	r := <-ch
	return r.cookie, r.err
}

// netnsHolders lists what still keeps the namespace id alive: a task inside
// it, an open file descriptor of it, or a bind mount of it in this mount
// namespace. Empty means the kernel has freed it, and with it everything it
// held: kube-proxy's iptables chains and nftables tables (table ip
// kube-proxy, table ip6 kube-proxy), the node cache's NOTRACK table, the
// lab's tables, interfaces, addresses, routes and conntrack entries.
func netnsHolders(id NetnsID) []string {
	if id.Inode == 0 {
		return nil
	}
	var held []string
	same := func(path string) bool {
		var st syscall.Stat_t
		if syscall.Stat(path, &st) != nil || st.Ino != id.Inode {
			return false
		}
		// The inode alone can be a later namespace's: compare cookies.
		got, err := netnsIdentify(path)
		return err == nil && got == id
	}
	link := fmt.Sprintf("net:[%d]", id.Inode)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		who := fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			if same(fmt.Sprintf("/proc/%d/task/%s/ns/net", pid, t.Name())) {
				held = append(held, who+" runs inside it")
				break
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			p := fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())
			if l, err := os.Readlink(p); err == nil && l == link && same(p) {
				held = append(held, who+" holds it open (fd "+fd.Name()+")")
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 5 && f[3] == link && same(unescapeMount(f[4])) {
				held = append(held, "bind mount "+unescapeMount(f[4]))
			}
		}
	}
	return held
}
