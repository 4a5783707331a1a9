// Command etcd is etcd's own server main, built from the module proxy so the
// e2e suite needs no download outside the Go toolchain. It is kept in its own
// module because etcd v3.7.3 and k8s.io/kubernetes v1.37.2 pin different
// versions of shared dependencies (grpc, otel).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
