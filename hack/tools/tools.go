//go:build tools

// Package tools pins the Kubernetes control-plane commands the e2e suite
// builds (hack/build-tools.sh) so that `go mod tidy` in this module keeps
// their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
