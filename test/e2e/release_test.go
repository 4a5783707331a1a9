//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The release under test: `make release` of the tree (hack/e2e.sh builds it
// into E2E_RELEASE_DIR), pushed into the node's registry as users get it
// from ghcr.io: the images (indexes, signatures, SBOM attestations) and the
// chart as an OCI artifact. Every scenario installs and upgrades with the
// chart's oci:// reference; containerd pulls ghcr.io/dnsguard/* from the
// node's registry (test/cluster), and dnsguard's images are not imported.

// releasedImage is one line of the release's images.txt:
// ghcr.io/dnsguard/NAME:VERSION@sha256:...
type releasedImage struct {
	Name, Ref, Digest string
}

// releaseInfo is what the suite knows of the release under test.
type releaseInfo struct {
	dir      string // DIST/X.Y.Z
	version  string // the tree's chart version
	registry string // host:port of the node's registry
	images   map[string]releasedImage
}

var rel releaseInfo

func loadRelease(version string) error {
	rel = releaseInfo{dir: os.Getenv("E2E_RELEASE_DIR"), version: version, registry: os.Getenv("CLUSTER_REGISTRY"), images: map[string]releasedImage{}}
	if rel.dir == "" || rel.registry == "" {
		return fmt.Errorf("E2E_RELEASE_DIR and CLUSTER_REGISTRY must be set: run the suite through hack/e2e.sh (make release, dgcluster run)")
	}
	f, err := os.Open(filepath.Join(rel.dir, "images.txt"))
	if err != nil {
		return fmt.Errorf("the release under test: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ref, digest, ok := strings.Cut(line, "@")
		repo, tag, ok2 := strings.Cut(ref, ":")
		if !ok || !ok2 || !strings.HasPrefix(digest, "sha256:") || !strings.HasPrefix(repo, "ghcr.io/dnsguard/") {
			return fmt.Errorf("%s: line %q is not ghcr.io/dnsguard/NAME:VERSION@sha256:...", f.Name(), line)
		}
		if tag != version {
			return fmt.Errorf("%s: %s is tagged %s, the tree's chart version is %s", f.Name(), repo, tag, version)
		}
		name := strings.TrimPrefix(repo, "ghcr.io/dnsguard/")
		rel.images[name] = releasedImage{Name: name, Ref: line, Digest: digest}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, n := range []string{"webhook", "resolver"} {
		if _, ok := rel.images[n]; !ok {
			return fmt.Errorf("%s lists no %s image", f.Name(), n)
		}
	}
	return nil
}

// chartRef is the released chart in the node's registry.
func chartRef() string { return "oci://" + rel.registry + "/dnsguard/charts/dnsguard" }

// chartArgs are the chart reference arguments of helm install/upgrade.
func chartArgs() []string { return []string{chartRef(), "--version", rel.version, "--plain-http"} }

var (
	publishOnce sync.Once
	publishErr  error
)

// publishRelease pushes the release into the node's registry and verifies
// both images' signatures there with the release's public key, once per
// run (c0 does it; u1 when run alone). A signature that does not verify is
// an error: the install must not go ahead.
func publishRelease(ctx context.Context, t *testing.T) {
	t.Helper()
	publishOnce.Do(func() {
		start := time.Now()
		if _, err := command(ctx, "release", filepath.Join(e2e.root, "hack", "release.sh"), "publish", rel.dir, rel.registry); err != nil {
			publishErr = fmt.Errorf("publish the release into the node's registry: %w", err)
			return
		}
		t.Logf("published %s (images, chart, their signatures, SBOM attestations) into %s in %.1fs", rel.dir, rel.registry, time.Since(start).Seconds())
		publishErr = verifySignatures(ctx, t, filepath.Join(rel.dir, "cosign.pub"))
	})
	if publishErr != nil {
		t.Fatal(publishErr)
	}
}

// emptyTrustedRoot is a Sigstore trusted root that trusts nothing: no
// transparency log, no certificate authority. The release is verified with
// its key alone (--insecure-ignore-tlog: it is never uploaded to Rekor),
// and without a trusted root of its own cosign fetches the public
// instance's from its TUF repository first: a lookup and a connection
// leaving the node's namespace (they time out there, ~5 s per image).
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// verifySignatures runs cosign verify against the node's registry, as a
// user verifies before installing: every released image by digest, and the
// chart by the version helm installs.
func verifySignatures(ctx context.Context, t *testing.T, key string) error {
	t.Helper()
	trustedRoot := filepath.Join(e2e.logs, "trusted_root.json")
	if err := os.WriteFile(trustedRoot, []byte(emptyTrustedRoot+"\n"), 0o644); err != nil {
		return err
	}
	type signed struct{ ref, repo, digest string }
	var all []signed
	for _, name := range []string{"webhook", "resolver"} {
		img := rel.images[name]
		all = append(all, signed{rel.registry + "/dnsguard/" + name + "@" + img.Digest, "ghcr.io/dnsguard/" + name, img.Digest})
	}
	all = append(all, signed{rel.registry + "/dnsguard/charts/dnsguard:" + rel.version, "ghcr.io/dnsguard/charts/dnsguard", ""})
	for _, s := range all {
		out, err := command(ctx, "cosign", filepath.Join(e2e.bin, "cosign"), "verify", "--key", key, "--trusted-root", trustedRoot,
			"--insecure-ignore-tlog", "--allow-http-registry", "--allow-insecure-registry", s.ref)
		if err != nil {
			return fmt.Errorf("cosign verify %s with %s: %w", s.ref, key, err)
		}
		// cosign prints the verified payloads; their critical section
		// names the repository it was signed for (users pull
		// ghcr.io/dnsguard/..., not this mirror) and the digest signed.
		want := []string{`"docker-reference":"` + s.repo + `"`}
		if s.digest != "" {
			want = append(want, `"docker-manifest-digest":"`+s.digest+`"`)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("cosign verify %s: the verified payload does not hold %s:\n%s", s.ref, w, out)
			}
		}
		t.Logf("cosign verify %s: signature verified with %s", s.ref, filepath.Base(key))
	}
	return nil
}

// command runs a program (not one of ./bin's kubectl/helm wrappers) with
// its output appended to logs/LOG.log and returned.
func command(ctx context.Context, log, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e2e.root
	home := filepath.Join(e2e.logs, "helm-home")
	// cosign keeps its TUF cache under $HOME/.sigstore; helm (run by the
	// publish step) its registry state under HELM_*: both in the run's logs.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data",
		"TUF_ROOT="+filepath.Join(e2e.logs, "sigstore"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if f, ferr := os.OpenFile(filepath.Join(e2e.logs, log+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== %s %s %s\n%s\n", time.Now().Format(time.TimeOnly), name, strings.Join(args, " "), out.String())
		f.Close()
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// containerdImages lists the image references containerd's k8s.io
// namespace (the CRI's) holds.
func containerdImages(ctx context.Context) ([]string, error) {
	out, err := command(ctx, "ctr", filepath.Join(e2e.bin, "ctr"), "--address", os.Getenv("CLUSTER_CONTAINERD_SOCK"), "-n", "k8s.io", "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "level=") {
			refs = append(refs, l)
		}
	}
	return refs, nil
}

// importImage loads an image tarball into every node's containerd, k8s.io
// namespace (what test/cluster does for the test images at start): a
// DaemonSet that tolerates the second node's taint (the node cache of the
// previous release in u1) runs there too, and its containerd would
// otherwise try the image's own registry.
func importImage(ctx context.Context, file string) error {
	for _, sock := range strings.Split(os.Getenv("CLUSTER_CONTAINERD_SOCKS"), ",") {
		if _, err := command(ctx, "ctr", filepath.Join(e2e.bin, "ctr"), "--address", sock, "-n", "k8s.io", "images", "import", file); err != nil {
			return err
		}
	}
	return nil
}

// imageDigest is the digest part of a container status's imageID
// (ghcr.io/dnsguard/webhook@sha256:...).
func imageDigest(imageID string) string {
	if _, d, ok := strings.Cut(imageID, "@"); ok {
		return d
	}
	return imageID
}
