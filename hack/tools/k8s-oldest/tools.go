//go:build tools

// Package tools pins the oldest Kubernetes API server the chart claims
// (kubeVersion >=1.29), built by hack/build-tools.sh as
// bin/kube-apiserver-1.29 for test/compat, so that `go mod tidy` in this
// module keeps its dependencies. Only the API server: test/compat needs
// admission, not a node (see test/cluster/doc.go for why no 1.29 kubelet).
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
