package cluster

import (
	"fmt"
	"path/filepath"
)

// The control plane listens inside the node namespace: etcd on its loopback,
// the API server on every address of the namespace (pods reach it through
// the kubernetes Service, which the API server's own endpoint reconciler
// points at NodeIP), the controller manager and scheduler on loopback.

func (c *Cluster) etcdArgs() []string {
	return []string{
		filepath.Join(c.cfg.Bin, "etcd"),
		"--name=dgnode", "--data-dir=" + c.cfg.path("etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=dgnode=http://127.0.0.1:2380",
		"--unsafe-no-fsync", "--log-level=warn",
	}
}

func (c *Cluster) apiserverArgs() []string {
	pki := c.cfg.path("pki")
	args := []string{
		filepath.Join(c.cfg.Bin, c.cfg.APIServer),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--advertise-address=" + NodeIP, fmt.Sprintf("--secure-port=%d", APIPort),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--kubelet-client-certificate=" + filepath.Join(pki, "admin.crt"),
		"--kubelet-client-key=" + filepath.Join(pki, "admin.key"),
		"--kubelet-certificate-authority=" + filepath.Join(pki, "ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction,ResourceQuota,LimitRanger,PodSecurity",
		"--service-cluster-ip-range=" + c.cfg.serviceCIDRs(),
		"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--allow-privileged=true",
		"--profiling=false",
	}
	if fg := c.cfg.featureGatesFlag(); fg != "" {
		args = append(args, fg)
	}
	return args
}

func (c *Cluster) controllerManagerArgs() []string {
	pki := c.cfg.path("pki")
	kc := filepath.Join(pki, "kube-controller-manager.kubeconfig")
	return []string{
		filepath.Join(c.cfg.Bin, "kube-controller-manager"),
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--secure-port=10257",
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--cluster-signing-cert-file=" + filepath.Join(pki, "ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(pki, "ca.key"),
		"--leader-elect=false",
		"--profiling=false",
	}
}

func (c *Cluster) schedulerArgs() []string {
	kc := filepath.Join(c.cfg.path("pki"), "kube-scheduler.kubeconfig")
	return []string{
		filepath.Join(c.cfg.Bin, "kube-scheduler"),
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--secure-port=10259",
		"--leader-elect=false",
		"--profiling=false",
	}
}
