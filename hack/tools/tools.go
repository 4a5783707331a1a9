//go:build tools

// Package tools pins the Kubernetes commands the e2e suite builds
// (hack/build-tools.sh) so that `go mod tidy` in this module keeps their
// dependencies: the control plane, the node agents and kubectl.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
