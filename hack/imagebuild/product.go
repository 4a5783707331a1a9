package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Platforms a release builds, in index order.
var Platforms = []string{"linux/amd64", "linux/arm64"}

// Repository is where users pull the images from; the chart's defaults name
// it, and signatures name it (cosign --sign-container-identity) wherever the
// images were signed.
const Repository = "ghcr.io/dnsguard"

// source is the images' org.opencontainers.image.source label.
const source = "https://github.com/dnsguard/dnsguard"

// productImage is one image of the release: the Dockerfile's targets, the
// same files, user, entrypoint and port.
type productImage struct {
	Name       string   // last path element of the repository: webhook, resolver
	Title      string   // org.opencontainers.image.title
	Binaries   []string // commands of ./cmd, each at /NAME in the image
	Entrypoint string
	Ports      []string
}

// productImages are the two images the chart runs: the webhook image also
// runs the certificate controller (/certs); the resolver image is the
// sidecar and the node cache.
var productImages = []productImage{
	{Name: "webhook", Title: "dnsguard webhook", Binaries: []string{"webhook", "certs"}, Entrypoint: "/webhook", Ports: []string{"8443/tcp"}},
	{Name: "resolver", Title: "dnsguard resolver", Binaries: []string{"resolver"}, Entrypoint: "/resolver"},
}

// commands lists every binary the product images hold, once.
func commands() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range productImages {
		for _, b := range p.Binaries {
			if !seen[b] {
				seen[b] = true
				out = append(out, b)
			}
		}
	}
	return out
}

// goBuild cross-compiles every command for platform into dir. Everything
// that reaches the binaries is pinned, so one commit and one Go version give
// the same bytes: no cgo, -trimpath (no build paths), the architecture
// levels fixed (a GOAMD64 in the caller's environment would change the
// code), and no VCS stamping: go stamps a clone but not a `git worktree`
// checkout (its .git is a file), and CHANGELOG.md promises that a worktree
// of a release's commit rebuilds the release's digests. The commit is in
// the images' revision label and in the SBOM instead, and stamped into the
// binaries for --version and dnsguard_build_info (cmd/buildinfo) with the
// version; both follow from the commit and VERSION, so the bytes stay
// reproducible.
func goBuild(root, platform, dir, version, revision string) error {
	osName, arch, _, err := parsePlatform(platform)
	if err != nil {
		return err
	}
	const pkg = "github.com/dnsguard/dnsguard/cmd/buildinfo"
	ldflags := "-s -w -X " + pkg + ".Version=" + version + " -X " + pkg + ".Revision=" + revision
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=" + ldflags, "-o", dir + "/"}
	for _, c := range commands() {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+osName, "GOARCH="+arch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly", "GOEXPERIMENT=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (GOARCH=%s): %w", strings.Join(args, " "), arch, err)
	}
	return nil
}

// spec is the image of p for one platform, from binaries in binDir.
func (p productImage) spec(version, revision, platform, binDir string, epoch int64) (Spec, error) {
	s := Spec{
		Name:       Repository + "/" + p.Name + ":" + version,
		Entrypoint: []string{p.Entrypoint},
		// 65532: the conventional "nonroot" UID, the chart's runAsUser.
		User:  "65532:65532",
		Ports: p.Ports,
		Labels: map[string]string{
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.source":   source,
			"org.opencontainers.image.revision": revision,
			"org.opencontainers.image.title":    p.Title,
		},
		Epoch: epoch,
	}
	var err error
	if s.OS, s.Arch, s.Variant, err = parsePlatform(platform); err != nil {
		return Spec{}, err
	}
	for _, b := range p.Binaries {
		s.Files = append(s.Files, File{Src: filepath.Join(binDir, b), Dst: "/" + b, Mode: -1})
	}
	return s, nil
}
