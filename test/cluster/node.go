package cluster

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
)

// The node: containerd v2 (CRI) with runc from Debian and the CNI bridge,
// kubelet, kube-proxy (kubeproxy.go), and a dnsmasq standing in for the
// node's upstream resolver. Everything keeps its state under the run
// directory except the paths kubelet and containerd hard-code (see
// teardown.go).

// containerdSock is containerd's gRPC socket for this run.
func (c *Cluster) containerdSock() string { return c.cfg.path("containerd", "containerd.sock") }

func (c *Cluster) writeNodeConfigs() error {
	cni := c.cfg.path("cni", "net.d")
	files := map[string]string{
		// restrict_oom_score_adj: the machine's capability bounding set lacks
		// CAP_SYS_RESOURCE, so runc cannot lower a container's oom_score_adj
		// below its own ("can't get final child's PID from pipe: EOF").
		c.cfg.path("containerd", "config.toml"): fmt.Sprintf(`version = 3
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
`, c.cfg.path("containerd", "root"), c.cfg.path("containerd", "state"), c.containerdSock(),
			c.cfg.path("containerd", "containerd.sock.ttrpc"), c.registryHostsDir(), cni),
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
`, c.cfg.cniRanges(), c.cfg.cniRoutes(), c.cfg.path("cni", "ipam")),
		c.cfg.path("kubelet", "config.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
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
`, c.containerdSock(), NodeIP, c.cfg.path("pki", "kubelet-serving.crt"), c.cfg.path("pki", "kubelet-serving.key"),
			c.cfg.path("pki", "ca.crt"), ClusterDNS, ClusterDomain, c.cfg.path("node-resolv.conf"), c.cfg.path("pod-logs")),
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
	}
	maps.Copy(files, c.registryHosts())
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return os.MkdirAll(c.cfg.path("cni", "ipam"), 0o755)
}

func (c *Cluster) containerdArgs() []string {
	return []string{filepath.Join(c.cfg.Bin, "containerd"), "--config=" + c.cfg.path("containerd", "config.toml"), "--log-level=warn"}
}

func (c *Cluster) kubeletArgs() []string {
	return []string{
		filepath.Join(c.cfg.Bin, "kubelet"),
		"--config=" + c.cfg.path("kubelet", "config.yaml"),
		"--kubeconfig=" + c.cfg.path("pki", "kubelet.kubeconfig"),
		"--root-dir=" + c.cfg.path("kubelet", "root"),
		"--node-ip=" + c.cfg.nodeIPs(),
		"--hostname-override=" + NodeName,
		"--v=1",
	}
}

func (c *Cluster) dnsmasqArgs() []string {
	return []string{"dnsmasq", "--keep-in-foreground", "--conf-file=" + c.cfg.path("dnsmasq.conf"), "--pid-file=", "--user=root"}
}
