// Package cluster brings up a real one- or two-node Kubernetes for
// dnsguard's end-to-end tests and tears it down again, whatever way the run
// ends.
//
// Everything with a non-loopback address lives in a network namespace the
// package creates (held by one "sleep" process): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd v2 with runc and the CNI
// bridge, kubelet and kube-proxy in iptables or nftables mode
// (Config.ProxyMode; kubeproxy.go, which also switches a running cluster to
// the other mode). Service and pod IPs, the cni0 bridge and kube-proxy's
// chains or tables vanish with the namespace, and teardown checks that
// nothing keeps it alive. CoreDNS runs
// as the usual kube-system/kube-dns Deployment (2 replicas, Service 10.96.0.10)
// and forwards to a dnsmasq "node upstream" inside the namespace that answers
// only the test zone, so no query ever leaves the machine. An OCI registry
// (distribution) listens on the namespace's loopback, and containerd pulls
// every ghcr.io image from it, so the chart's released images come from
// what the suite pushed there.
//
// Two nodes (Config.Nodes = 2, dgcluster --nodes 2, what make e2e runs):
// the second node (Node2Name) has a network namespace of its own with its
// own containerd, kubelet and kube-proxy, their state, sockets, CNI
// configuration and leases, pod logs and kubelet root under
// RunDir/dgnode2, containerd's NRI socket there too, and kubelet's
// cgroupRoot /dgnode2 (created by Up in every hierarchy: its kubepods tree
// is /dgnode2/kubepods, apart from the first node's /kubepods, so neither
// kubelet sees, or cleans up as orphans, the other's pod cgroups). A veth
// pair links the namespaces (10.200.2.1 in the first, Node2IP in the
// second); the first routes Node2PodCIDR (10.244.1.0/24) to it, the second
// routes everything through the first, where the API server, the registry
// (listening on every address then; the second containerd pulls from
// NodeIP:5000) and the upstream DNS are. The CNI bridge's ipMasq hides pod
// IPs across nodes (masquerade to the link address): nothing in the suite
// relies on them. The second node is tainted Node2Taint:NoSchedule so
// scenarios written for one node stay on the first (the race lab and the
// fault matrix count and drop packets in its namespace); CoreDNS is pinned
// to the first node, so pods on the second cross the link for it. What
// both nodes share on the host is harmless: kubelet's device-plugin socket
// under /var/lib/kubelet (taken over by the second kubelet; no device
// plugin runs), containerd's shim sockets and runc state under
// /run/containerd (named per containerd socket and container ID). Teardown
// kills both kubelets first, then the containers of both cgroup trees,
// and checks both namespaces freed; the state file records the second
// namespace (NodeNetns) and cgroup root (CgroupRoots) for the cleanup
// after a killed run.
//
// What kubelet changes outside the namespace is put back: the kernel settings
// it rewrites (saved before start, restored on every exit path and by the
// next run after a killed one), its cgroups under kubepods, the mounts under
// the run directory and the fixed host paths of kubelet and containerd.
//
// One cluster per machine: kubelet and containerd use fixed host paths and
// kubelet's sysctls are global, so Up takes an exclusive lock and says when
// it waits for it. The state file beside the lock records what a run started,
// so the next run can clean up after one that was killed.
//
// IP families: IPv4 only, or dual-stack with Config.DualStack (dgcluster
// --dual-stack; hack/e2e.sh makes it by default, E2E_IP_FAMILIES=ipv4 to
// turn it off), IPv4 primary as kubeadm builds one (ipfamily.go): Service
// ranges 10.96.0.0/16 and fd00:10:96::/112, pod ranges 10.244.0.0/24 and
// fd00:10:244::/64 (the CNI bridge's host-local IPAM, a range and a
// default route per family), kubelet --node-ip 10.200.0.2,fd00:200::2,
// kube-proxy's clusterCIDR of both families, IPv6 forwarding and
// bridge-nf-call-ip6tables in the namespace, the node upstream answering on
// fd00:200::1 too (addresses nodad). With two nodes the second has
// fd00:200:2::2 on the link (fd00:200:2::1 the first node's end, its IPv6
// gateway) and pods in fd00:10:244:1::/64, routed like the IPv4 ones.
// kube-dns stays SingleStack IPv4, as
// kubeadm creates it; the e2e scenario d1 switches it to RequireDualStack
// in place and adds an IPv6-only kube-dns-v6 beside it. The controller
// manager allocates no node CIDRs (the CNI configuration names the node's
// ranges). An IPv6-primary or IPv6-only cluster does not run.
//
// Other API servers: Config.APIServer names another kube-apiserver binary
// in Bin and Config.FeatureGates its --feature-gates; both are checked
// before the lock is taken (a gate the binary's --help does not list is
// refused by name). test/compat runs kube-apiserver v1.29.6, the chart's
// kubeVersion floor (hack/tools/k8s-oldest, bin/kube-apiserver-1.29), with
// SidecarContainers on and off, ControlPlaneOnly, and the webhook started
// with Cluster.Start inside the namespace so the API server calls it on
// its loopback. Only that API server is built at 1.29, not its kubelet:
// admission is where a 1.29 cluster differs for dnsguard (whether an init
// container keeps restartPolicy: Always), and it needs no node; a 1.29
// node (kubelet, and kube-proxy to match) would add minutes more to a cold
// make test already near its budget, for the version skew of an old
// kubelet under a newer API server, which admission cannot see.
//
// The layout follows one job per file: config.go (addresses, paths),
// lock.go (lock and state), sysctl.go, process.go, netns.go, pki.go,
// controlplane.go, node.go (the per-node type: namespace, addresses,
// directories, cgroup root), kubeproxy.go, ipfamily.go, registry.go,
// addons.go, images.go, teardown.go, cluster.go.
package cluster
