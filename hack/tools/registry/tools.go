//go:build tools

// Package tools pins distribution (the reference OCI registry), which serves
// a release's images and chart on the test node's loopback so that the e2e
// suite installs as users do: helm install from oci://, images pulled by
// containerd.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
