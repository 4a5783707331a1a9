package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Fixed addresses inside the node's network namespace. They exist only
// there: the namespace has no link to the host's.
const (
	NodeName      = "dgnode"
	NodeIP        = "10.200.0.2" // kubelet, kube-apiserver (advertised), kube-proxy
	UpstreamIP    = "10.200.0.1" // the node's upstream DNS (dnsmasq), kubelet's resolv.conf
	PodCIDR       = "10.244.0.0/24"
	ClusterCIDR   = "10.244.0.0/16"
	ServiceCIDR   = "10.96.0.0/16"
	KubernetesSvc = "10.96.0.1"
	ClusterDNS    = "10.96.0.10"
	ClusterDomain = "cluster.local"
	APIPort       = 6443
	// TestZone is answered by the node upstream; everything else is REFUSED
	// so no lookup can leave the machine.
	TestZone = "dnsguard.test"
	// RegistryAddr is the node's OCI registry (plain HTTP): the suite and
	// the first node's containerd use the namespace's loopback; the second
	// node's containerd reaches it on NodeIP (registry.go).
	RegistryAddr = "127.0.0.1:5000"
	RegistryPort = "5000"
)

// The second node (Config.Nodes = 2): a network namespace of its own,
// linked to the first node's by a veth pair (node2LinkIP on the first
// node's end, Node2IP on its own), its pod network routed through it.
const (
	Node2Name    = "dgnode2"
	Node2IP      = "10.200.2.2"
	node2LinkIP  = "10.200.2.1"
	Node2PodCIDR = "10.244.1.0/24"
	// Node2Taint keeps every pod that does not tolerate it off the second
	// node, so scenarios written for one node (the race lab counts packets
	// in the first node's namespace, the fault matrix drops them there)
	// run where they did. The two-node scenarios tolerate it; DaemonSets
	// that tolerate every taint (the chart's node cache) run on both.
	Node2Taint = "dnsguard.test/second-node"
)

// MirroredRegistries are the registries containerd resolves through the
// node's registry instead: the chart's images (ghcr.io/dnsguard/...) come
// from what the suite pushed, and no pull ever leaves the machine.
var MirroredRegistries = []string{"ghcr.io"}

// Config says where the binaries are and where a run keeps its files.
type Config struct {
	// Bin holds kube-apiserver, kubelet, containerd, ... (symlinks into the
	// tool cache, made by hack/build-tools.sh).
	Bin string
	// Images lists OCI image tarballs imported into containerd's k8s.io
	// namespace before the node starts: the test images (pause, CoreDNS,
	// clients). dnsguard's own images are not among them: pods pull them
	// from the node's registry (registry.go).
	Images []string
	// RunDir is this run's directory (PKI, configs, containerd and kubelet
	// state, logs). Created by Up, removed by Down unless Keep.
	RunDir string
	// StateDir holds the lock and the state file shared by every run on the
	// machine.
	StateDir string
	// LogDir receives a copy of the component logs when the run ends.
	LogDir string
	// Keep leaves RunDir in place after Down (logs, PKI, etcd data).
	Keep bool
	// ProxyMode is kube-proxy's mode: ProxyIPTables (the default, when
	// empty) or ProxyNFTables. Up checks that kube-proxy reports it on its
	// metrics endpoint (/proxyMode) and fails otherwise.
	ProxyMode ProxyMode
	// DualStack makes the cluster IPv4+IPv6, IPv4 primary (ipfamily.go):
	// Service and pod ranges, node and upstream addresses of both
	// families; kube-dns stays SingleStack IPv4 as kubeadm creates it.
	DualStack bool
	// ControlPlaneOnly starts etcd and kube-apiserver and nothing else: no
	// node, so admission (validation, quota, LimitRange, defaulting) runs in
	// full while pods stay Pending. For suites that only need the API
	// server's verdict on objects (test/quota).
	ControlPlaneOnly bool
	// APIServer is the file name, in Bin, of the kube-apiserver binary to
	// run; default "kube-apiserver". test/compat runs "kube-apiserver-1.29"
	// (the chart's kubeVersion floor) with the same etcd and flags.
	APIServer string
	// FeatureGates are passed to kube-apiserver as --feature-gates=K=V,...
	// (test/compat turns SidecarContainers off on v1.29). A gate the binary
	// does not know makes it exit at start; Up then fails with its log.
	FeatureGates map[string]bool
	// Nodes is how many nodes run: 1 (the default, when 0) or 2. The
	// second node (Node2Name) has its own network namespace, containerd,
	// kubelet and kube-proxy, state under RunDir/Node2Name, pods in
	// Node2PodCIDR, and the taint Node2Taint:NoSchedule.
	Nodes int
	// Log prints progress lines.
	Log func(format string, args ...any)
}

// DefaultStateDir is machine-wide on purpose: the lock must be shared by
// every clone and every helper on this machine.
const DefaultStateDir = "/run/dnsguard-cluster"

func (c *Config) validate() error {
	if c.Bin == "" {
		return fmt.Errorf("config: Bin is empty")
	}
	if c.APIServer == "" {
		c.APIServer = "kube-apiserver"
	}
	if c.APIServer != filepath.Base(c.APIServer) || strings.HasPrefix(c.APIServer, ".") {
		return fmt.Errorf("config: APIServer %q: want a file name in Bin (%s), not a path", c.APIServer, c.Bin)
	}
	for name := range c.FeatureGates {
		// Gate names are CamelCase identifiers; anything else would be
		// read by kube-apiserver as a different flag syntax.
		if !featureGateName.MatchString(name) {
			return fmt.Errorf("config: feature gate %q: not a gate name (want CamelCase letters and digits)", name)
		}
	}
	if c.Nodes == 0 {
		c.Nodes = 1
	}
	if c.Nodes < 1 || c.Nodes > 2 {
		return fmt.Errorf("config: Nodes %d: want 1 or 2", c.Nodes)
	}
	if c.ControlPlaneOnly && c.Nodes > 1 {
		return fmt.Errorf("config: ControlPlaneOnly runs no node, Nodes %d makes no sense with it", c.Nodes)
	}
	bins := []string{"etcd", c.APIServer}
	if !c.ControlPlaneOnly {
		bins = append(bins, "kube-controller-manager", "kube-scheduler",
			"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "registry")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return fmt.Errorf("config: %s missing in %s (hack/build-tools.sh builds it): %w", b, c.Bin, err)
		}
	}
	if err := c.checkFeatureGates(); err != nil {
		return err
	}
	if c.ProxyMode == "" {
		c.ProxyMode = ProxyIPTables
	}
	if err := c.ProxyMode.Valid(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	return nil
}

var featureGateName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// checkFeatureGates asks the API server binary for the gates it knows
// (--help lists each as "Name=true|false"), so a misspelt or retired gate
// fails here, naming it, before the lock is taken and etcd started.
func (c *Config) checkFeatureGates() error {
	if len(c.FeatureGates) == 0 {
		return nil
	}
	bin := filepath.Join(c.Bin, c.APIServer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("config: %s --help: %w", bin, err)
	}
	for name := range c.FeatureGates {
		if !bytes.Contains(out, []byte(" "+name+"=true|false")) {
			return fmt.Errorf("config: feature gate %q: %s does not know it (see its --help)", name, c.APIServer)
		}
	}
	return nil
}

// featureGatesFlag is --feature-gates=A=true,B=false in name order (stable
// across runs, so logs compare); empty when no gate is set.
func (c *Config) featureGatesFlag() string {
	if len(c.FeatureGates) == 0 {
		return ""
	}
	names := make([]string, 0, len(c.FeatureGates))
	for n := range c.FeatureGates {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = n + "=" + strconv.FormatBool(c.FeatureGates[n])
	}
	return "--feature-gates=" + strings.Join(names, ",")
}

func (c *Config) path(p ...string) string { return filepath.Join(append([]string{c.RunDir}, p...)...) }
