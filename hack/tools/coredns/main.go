// Command coredns is CoreDNS's own main, built from the module proxy with
// the plugins the Corefiles here use (plugins.go): the cluster DNS of the
// e2e suite's real node, run as the usual kube-system/kube-dns Deployment,
// and the CoreDNS of make bench.
package main

import "github.com/coredns/coredns/coremain"

func main() {
	coremain.Run()
}
