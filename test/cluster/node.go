package cluster

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
)

// A node: containerd v2 (CRI) with runc from Debian and the CNI bridge,
// kubelet and kube-proxy (kubeproxy.go). The first node also runs the
// control plane, the registry and a dnsmasq standing in for the nodes'
// upstream resolver. Everything keeps its state under the run directory
// except the paths kubelet and containerd hard-code (see teardown.go).

// node is one node: its network namespace, addresses and directories.
// Each node's components have their own state, sockets, CNI configuration
// and leases, pod logs, kubelet root and cgroup root, so two nodes on one
// machine do not see each other's pods or containers.
type node struct {
	name    string
	ip      string // InternalIP: kubelet, kube-proxy
	podCIDR string
	// ipv6 and podCIDRv6 are the node's IPv6 twins, used when the cluster
	// is dual-stack (ipfamily.go).
	ipv6, podCIDRv6 string
	// dir holds the node's files: the run directory itself for the first
	// node (its paths are what they were before there was a second),
	// RunDir/NAME for the second.
	dir string
	// netns is the /proc/PID/ns/net path of the namespace's holder.
	netns string
	// cgroupRoot is kubelet's cgroupRoot: "/" for the first node (pods
	// under /kubepods), "/NAME" for the second, so each kubelet's pod
	// cgroups (and its cleanup of cgroups it does not know) stay in a tree
	// of its own.
	cgroupRoot string
	// suffix tells the node's processes apart in the state file and the
	// logs: "" for the first node ("kubelet"), "-NAME" for the second.
	suffix string
	// taints are registered by kubelet (--register-with-taints).
	taints []string
	// registry is how this node's containerd reaches the registry.
	registry string
}

func (n *node) path(p ...string) string { return filepath.Join(append([]string{n.dir}, p...)...) }

// proc is the name of component comp of this node (state file, logs).
func (n *node) proc(comp string) string { return comp + n.suffix }

// newNodes lays out the cfg.Nodes nodes of a run.
func newNodes(cfg *Config) []*node {
	nodes := []*node{{name: NodeName, ip: NodeIP, podCIDR: PodCIDR, ipv6: NodeIPv6, podCIDRv6: PodCIDRv6,
		dir: cfg.RunDir, cgroupRoot: "/", registry: RegistryAddr}}
	if cfg.Nodes > 1 {
		nodes = append(nodes, &node{name: Node2Name, ip: Node2IP, podCIDR: Node2PodCIDR, ipv6: Node2IPv6, podCIDRv6: Node2PodCIDRv6,
			dir:        cfg.path(Node2Name),
			cgroupRoot: "/" + Node2Name, suffix: "-" + Node2Name, taints: []string{Node2Taint + "=:NoSchedule"},
			registry: NodeIP + ":" + RegistryPort})
	}
	return nodes
}

// containerdSock is the node's containerd gRPC socket.
func (n *node) containerdSock() string { return n.path("containerd", "containerd.sock") }

// writeNodeConfigs writes the node's containerd, CNI and kubelet files.
func (c *Cluster) writeNodeConfigs(n *node) error {
	cni := n.path("cni", "net.d")
	files := map[string]string{
		// restrict_oom_score_adj: the machine's capability bounding set lacks
		// CAP_SYS_RESOURCE, so runc cannot lower a container's oom_score_adj
		// below its own ("can't get final child's PID from pipe: EOF").
		n.path("containerd", "config.toml"): fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'registry.k8s.io/pause:3.10.1'
[plugins.'io.containerd.cri.v1.images'.registry]
  # hosts.toml per registry (registry.go): ghcr.io from the node's registry.
  config_path = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  # Pod network namespaces under the run directory, not /var/run/netns
  # (where 'ip netns list' would show them and a killed run leave them).
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_cdi = false
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/usr/lib/cni']
  conf_dir = %q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
# NRI's socket defaults to the fixed /var/run/nri/nri.sock, which a second
# node's containerd would take over.
[plugins.'io.containerd.nri.v1.nri']
  socket_path = %q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.containerdSock(),
			n.path("containerd", "containerd.sock.ttrpc"), n.registryHostsDir(), cni, n.path("containerd", "nri.sock")),
		// One bridge network (a range and a default route per IP family);
		// host-local keeps its leases in the run
		// directory, not in the host's /var/lib/cni/networks.
		filepath.Join(cni, "10-dgnet.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "dgnet",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": %s,
        "routes": %s,
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, c.cfg.cniRanges(n), c.cfg.cniRoutes(), n.path("cni", "ipam")),
		n.path("kubelet", "config.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has a cgroup v1 (hybrid) layout, cgroupfs, and no
# CAP_SYS_RESOURCE in the bounding set (oomScoreAdj 0).
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
clusterDNS: [%s]
clusterDomain: %s
resolvConf: %s
podLogsDir: %s
cgroupRoot: %s
failSwapOn: false
protectKernelDefaults: false
serializeImagePulls: false
# A test node on a shared disk: evict only when really short.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
`, n.containerdSock(), n.ip, c.cfg.path("pki", n.pkiName()+"-serving.crt"), c.cfg.path("pki", n.pkiName()+"-serving.key"),
			c.cfg.path("pki", "ca.crt"), ClusterDNS, ClusterDomain, c.cfg.path("node-resolv.conf"), n.path("pod-logs"), n.cgroupRoot),
	}
	maps.Copy(files, n.registryHosts())
	if err := writeFiles(files); err != nil {
		return err
	}
	return os.MkdirAll(n.path("cni", "ipam"), 0o755)
}

// writeUpstreamConfig writes what every node shares: the nodes'
// resolv.conf and the upstream's configuration.
func (c *Cluster) writeUpstreamConfig() error {
	return writeFiles(map[string]string{
		// The node's resolv.conf: what dnsPolicy Default pods (CoreDNS among
		// them) get. It names the node upstream only.
		c.cfg.path("node-resolv.conf"): fmt.Sprintf("nameserver %s\nsearch %s\n", UpstreamIP, TestZone),
		// The node upstream answers the test zone and refuses the rest, so
		// CoreDNS's "forward . /etc/resolv.conf" never leaves the machine.
		// Its records carry TTL 30 (local-ttl; dnsmasq's default is 0) as
		// real zones do: an answer with TTL 0 is cached by no resolver, so
		// the fault matrix's upstream outage (TestFaultMatrix, fault f)
		// could not show serve-stale for the node cache, which asks this
		// upstream directly.
		c.cfg.path("dnsmasq.conf"): fmt.Sprintf(`listen-address=%s
bind-interfaces
no-resolv
no-hosts
no-negcache
local-ttl=30
log-facility=-
address=/%s/10.200.9.9
address=/%s/fd00:200::9
host-record=www.%s,10.200.9.10,fd00:200::10
host-record=api.%s,10.200.9.11,fd00:200::11
local=/%s/
`, c.cfg.upstreamAddrs(), "wildcard."+TestZone, "wildcard."+TestZone, TestZone, TestZone, TestZone),
	})
}

func writeFiles(files map[string]string) error {
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// pkiName is the file name prefix of the node's kubelet credentials
// (pki.go): "kubelet" for the first node, "kubelet-NAME" for the second.
func (n *node) pkiName() string { return "kubelet" + n.suffix }

func (c *Cluster) containerdArgs(n *node) []string {
	return []string{filepath.Join(c.cfg.Bin, "containerd"), "--config=" + n.path("containerd", "config.toml"), "--log-level=warn"}
}

func (c *Cluster) kubeletArgs(n *node) []string {
	args := []string{
		filepath.Join(c.cfg.Bin, "kubelet"),
		"--config=" + n.path("kubelet", "config.yaml"),
		"--kubeconfig=" + c.cfg.path("pki", n.pkiName()+".kubeconfig"),
		"--root-dir=" + n.path("kubelet", "root"),
		"--node-ip=" + c.cfg.nodeIPs(n),
		"--hostname-override=" + n.name,
		"--v=1",
	}
	if len(n.taints) > 0 {
		args = append(args, "--register-with-taints="+strings.Join(n.taints, ","))
	}
	return args
}

// makeCgroupRoot creates the node's cgroupRoot in every hierarchy:
// kubelet refuses to start when it does not exist ("cgroup-root doesn't
// exist"). cpuset gets its parent's CPUs and memory nodes (an empty cpuset
// admits no task). The first node's root is "/": nothing to do. Teardown
// removes it (cgroupRoots).
func makeCgroupRoot(n *node) error {
	if n.cgroupRoot == "/" {
		return nil
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, e := range ents {
		base := filepath.Join("/sys/fs/cgroup", e.Name())
		d := filepath.Join(base, n.cgroupRoot)
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(base, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup root %s: %w", f, err)
				}
			}
		}
	}
	return nil
}

func (c *Cluster) dnsmasqArgs() []string {
	return []string{"dnsmasq", "--keep-in-foreground", "--conf-file=" + c.cfg.path("dnsmasq.conf"), "--pid-file=", "--user=root"}
}
