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
	// The settings first: IPv6 must be on before its addresses go on.
	if err := nodeSysctls(netns, dualStack); err != nil {
		return err
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
	if dualStack {
		steps = append(steps, ipv6NetnsSteps()...)
	}
	for _, s := range steps {
		if _, err := inNetns(netns, s...); err != nil {
			return fmt.Errorf("node namespace: %w", err)
		}
	}
	return nil
}

// nodeSysctls sets what every node's namespace needs: forwarding for pod
// traffic, bridged pod -> ClusterIP -> pod traffic through iptables and
// ip6tables (kube-proxy's DNAT), and, dual-stack, IPv6 on (a new namespace
// takes its IPv6 defaults from the host's, which may have it off).
func nodeSysctls(netns string, dualStack bool) error {
	sysctls := map[string]string{
		"net.ipv4.ip_forward":                 "1",
		"net.bridge.bridge-nf-call-iptables":  "1",
		"net.bridge.bridge-nf-call-ip6tables": "1",
		"net.ipv4.conf.all.rp_filter":         "0",
	}
	if dualStack {
		maps.Copy(sysctls, ipv6Sysctls)
	}
	for k, v := range sysctls {
		if _, err := inNetns(netns, "sh", "-c", fmt.Sprintf("echo %s > %s", v, sysctlPath(k))); err != nil {
			return fmt.Errorf("node namespace sysctl %s: %w", k, err)
		}
	}
	return nil
}

// netnsDial returns a dial function whose sockets are created inside the
// namespace: the socket() call runs on an OS thread switched into it
// (inNetnsThread), and a socket keeps its namespace for life, so the
// connection then works from any goroutine.
func netnsDial(netnsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var derr error
		if err := inNetnsThread(netnsPath, func() {
			var d net.Dialer
			c, derr = d.DialContext(ctx, network, addr)
		}); err != nil {
			return nil, err
		}
		return c, derr
	}
}

// inNetnsThread runs f on an OS thread switched into the namespace at
// netnsPath, and switches the thread back before it unlocks it. Letting
// the thread exit while locked is not enough: a goroutine that happens to
// run on the main thread cannot end it, Go wedges that thread instead, and
// it would stay inside the node's namespace, which teardown then rightly
// reports as kept alive (seen in make compat-test). Only if switching back
// fails does the thread stay locked and go with its goroutine. The error
// is for a failure before f ran.
func inNetnsThread(netnsPath string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fail := func(err error) {
			runtime.UnlockOSThread()
			errc <- err
		}
		orig, err := netns.Get()
		if err != nil {
			fail(fmt.Errorf("current namespace: %w", err))
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(netnsPath)
		if err != nil {
			fail(fmt.Errorf("open %s: %w", netnsPath, err))
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			fail(fmt.Errorf("enter %s: %w", netnsPath, err))
			return
		}
		f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	return <-errc
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

// linkNodes joins the second node's namespace to the first's: a veth pair
// (dg2 in the first, dg0 in the second) on the link net 10.200.2.0/24,
// the second node's default route through the first (where the API
// server, the registry and the upstream DNS are), and a route in the first
// to the second node's pod network. The first node's pods reach the
// second's over the first node's default path for 10.244.1.0/24; the
// second's reach the first's through its default route. Both namespaces
// forward; the CNI bridge's ipMasq masquerades pod traffic that leaves a
// node (to the other node's pods too: pod IPs are not kept across nodes,
// which nothing in the suite relies on).
func linkNodes(first, second *node, dualStack bool) error {
	if err := nodeSysctls(second.netns, dualStack); err != nil {
		return err
	}
	holder := strings.TrimSuffix(strings.TrimPrefix(second.netns, "/proc/"), "/ns/net")
	type step struct {
		netns string
		argv  []string
	}
	steps := []step{
		{first.netns, []string{"ip", "link", "add", "dg2", "type", "veth", "peer", "name", "dg0", "netns", holder}},
		{first.netns, []string{"ip", "addr", "add", node2LinkIP + "/24", "dev", "dg2"}},
		{first.netns, []string{"ip", "link", "set", "dg2", "up"}},
		{first.netns, []string{"ip", "route", "add", second.podCIDR, "via", second.ip, "dev", "dg2"}},
		{second.netns, []string{"ip", "link", "set", "lo", "up"}},
		{second.netns, []string{"ip", "addr", "add", second.ip + "/24", "dev", "dg0"}},
		{second.netns, []string{"ip", "link", "set", "dg0", "up"}},
		{second.netns, []string{"ip", "route", "add", "default", "via", node2LinkIP, "dev", "dg0"}},
	}
	if dualStack {
		// The same for IPv6 (nodad as in ipv6NetnsSteps); the gateway
		// node2LinkIPv6 is the first node's, not local to the second.
		steps = append(steps,
			step{first.netns, []string{"ip", "-6", "addr", "add", node2LinkIPv6 + nodeSubnetV6Len, "dev", "dg2", "nodad"}},
			step{first.netns, []string{"ip", "-6", "route", "add", second.podCIDRv6, "via", second.ipv6, "dev", "dg2"}},
			step{second.netns, []string{"ip", "-6", "addr", "add", second.ipv6 + nodeSubnetV6Len, "dev", "dg0", "nodad"}},
			step{second.netns, []string{"ip", "-6", "route", "add", "default", "via", node2LinkIPv6, "dev", "dg0"}})
	}
	for _, s := range steps {
		if _, err := inNetns(s.netns, s.argv...); err != nil {
			return fmt.Errorf("link %s and %s: %w", first.name, second.name, err)
		}
	}
	return nil
}
