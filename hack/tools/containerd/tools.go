//go:build tools

// Package tools pins containerd v2 (the daemon, ctr and the runc v2 shim) for
// the real node of the e2e suite. Debian 12 ships containerd 1.6, which
// Kubernetes 1.36+ no longer supports; v2 builds with CGO_ENABLED=0. It has a
// module of its own because its dependencies (grpc, otel) differ from
// k8s.io/kubernetes'.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
