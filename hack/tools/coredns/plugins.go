package main

// The plugins the Corefiles here use — test/cluster/addons.go's (kubeadm's
// standard Corefile) and hack/bench.sh's — plus log, for debugging a run.
// CoreDNS's standard set (core/plugin) would also compile the cloud DNS
// providers' SDKs, etcd's client and more: about 120 modules and minutes of
// a cold build that nothing here runs. A Corefile that names a plugin not
// listed here fails at CoreDNS's start ("Unknown directive"). hack/build-
// tools.sh hashes this file into CoreDNS's cache stamp.
import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)
