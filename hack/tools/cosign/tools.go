//go:build tools

// Package tools pins cosign, which signs the release's images with a key and
// verifies them before the e2e suite installs from the loopback registry. A
// module of its own: its dependency tree (sigstore, cloud KMS clients) shares
// little with the others.
package tools

import _ "github.com/sigstore/cosign/v2/cmd/cosign"
