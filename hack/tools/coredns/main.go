// Command coredns is CoreDNS's own main with its standard plugin set, built
// from the module proxy: the cluster DNS of the e2e suite's real node, run as
// the usual kube-system/kube-dns Deployment.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // the standard plugin set

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
