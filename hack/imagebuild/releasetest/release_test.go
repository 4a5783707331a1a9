//go:build releasetest

// Package releasetest checks `make release` by inspection, as a user or a
// reviewer would: it cuts release 0.2.0 twice into temporary directories,
// opens what they hold (OCI layouts, ELF headers, SBOMs against `go version
// -m`, the chart's rendered images, SHA256SUMS), publishes one into a fresh
// loopback registry and verifies signatures and attestations with cosign,
// and makes sure verification fails with another key and on a tampered
// tag. Run by `make release-test` (loopback registries: under the net lock).
package releasetest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/hack/imagebuild/internal/loopreg"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const version = "0.2.0"

var (
	images    = []string{"webhook", "resolver"}
	binaries  = map[string][]string{"webhook": {"webhook", "certs"}, "resolver": {"resolver"}}
	platforms = []string{"linux/amd64", "linux/arm64"}
	machines  = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
)

// env is the repository and its tools.
type env struct {
	root, bin string
}

func setup(t *testing.T) env {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	root := strings.TrimSpace(string(out))
	return env{root: root, bin: filepath.Join(root, "bin")}
}

// run runs a command in the repository and returns its combined output.
func (e env) run(t *testing.T, extraEnv []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cutRelease runs `make release` into dist and returns the release
// directory and the seconds it took. ALLOW_DIRTY=1: the test checks the
// mechanics on whatever tree it runs in (make test runs on a clean clone,
// where it changes nothing); the refusal of a dirty tree has its own unit
// test (TestReleaseRefusesDirtyTree).
func (e env) cutRelease(t *testing.T, dist string) (string, float64) {
	t.Helper()
	start := time.Now()
	out, err := e.run(t, []string{"ALLOW_DIRTY=1"}, "make", "-s", "release", "VERSION="+version, "DIST="+dist)
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	s := time.Since(start).Seconds()
	t.Logf("make release VERSION=%s DIST=%s: %.1f s", version, dist, s)
	return filepath.Join(dist, version), s
}

func TestRelease(t *testing.T) {
	e := setup(t)
	ctx := t.Context()

	// A bad VERSION stops before any work, saying why. Breaks if
	// checkVersion accepts "v0.2": make release would then build.
	if out, err := e.run(t, nil, "make", "-s", "release", "VERSION=v0.2", "DIST="+t.TempDir()); err == nil || !strings.Contains(out, "is not a SemVer version") {
		t.Errorf("make release VERSION=v0.2: err %v, want a SemVer error; output:\n%s", err, out)
	}

	dir, s1 := e.cutRelease(t, t.TempDir())
	dir2, s2 := e.cutRelease(t, t.TempDir())
	t.Logf("wall time: first release %.1f s, second %.1f s", s1, s2)

	listed := readImagesTxt(t, dir)
	t.Run("reproducible", func(t *testing.T) {
		// Same commit, same digests: index and every platform manifest.
		// Breaks when anything time- or path-dependent reaches an image
		// (e.g. dropping -trimpath, or a layer mtime of time.Now()).
		for _, img := range images {
			a, b := platformDigests(t, dir, img), platformDigests(t, dir2, img)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: two releases of one commit differ:\n%v\n%v", img, a, b)
			}
		}
		if l2 := readImagesTxt(t, dir2); !reflect.DeepEqual(listed, l2) {
			t.Errorf("images.txt differs between two releases of one commit:\n%v\n%v", listed, l2)
		}
	})

	for _, img := range images {
		t.Run("index/"+img, func(t *testing.T) { checkIndex(t, dir, img, listed[img]) })
	}
	t.Run("one-build-path", func(t *testing.T) { checkProduct(t, e, dir) })
	t.Run("chart", func(t *testing.T) { checkChart(t, e, dir, listed) })
	t.Run("sha256sums", func(t *testing.T) { checkSums(t, dir2) })
	t.Run("publish-verify", func(t *testing.T) { checkPublished(ctx, t, e, dir, listed) })
}

// readImagesTxt maps image name to index digest, checking every line's form.
func readImagesTxt(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^ghcr\.io/dnsguard/([a-z]+):` + regexp.QuoteMeta(version) + `@(sha256:[0-9a-f]{64})$`)
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("images.txt line %q is not ghcr.io/dnsguard/NAME:%s@sha256:...", l, version)
		}
		out[m[1]] = m[2]
	}
	if len(out) != len(images) {
		t.Fatalf("images.txt lists %v, want %v", out, images)
	}
	return out
}

// savedIndex is the image index in a release's layout (cosign save puts
// the index, its signatures and attestations side by side, told apart by
// the "kind" annotation).
func savedIndex(t *testing.T, dir, img string) (v1.ImageIndex, v1.Hash) {
	t.Helper()
	p, err := layout.FromPath(filepath.Join(dir, "images", img))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]v1.Hash{}
	for _, d := range m.Manifests {
		kinds[d.Annotations["kind"]] = d.Digest
	}
	// A layout without signature or attestation would publish an
	// unsigned image. Breaks if the release skips cosign sign or attest.
	for _, k := range []string{"dev.cosignproject.cosign/imageIndex", "dev.cosignproject.cosign/sigs", "dev.cosignproject.cosign/atts"} {
		if _, ok := kinds[k]; !ok {
			t.Fatalf("%s layout has no %s entry: %v", img, k, kinds)
		}
	}
	d := kinds["dev.cosignproject.cosign/imageIndex"]
	ii, err := top.ImageIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	return ii, d
}

// platformDigests is the index digest and each platform's manifest digest.
func platformDigests(t *testing.T, dir, img string) map[string]string {
	t.Helper()
	ii, d := savedIndex(t, dir, img)
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"index": d.String()}
	for _, desc := range m.Manifests {
		out[desc.Platform.String()] = desc.Digest.String()
	}
	return out
}

// checkIndex: exactly linux/amd64 and linux/arm64, configs agreeing, each
// binary an ELF of its platform's machine, the SBOM listing what `go
// version -m` shows, the index digest the one images.txt lists.
func checkIndex(t *testing.T, dir, img, listedDigest string) {
	ii, d := savedIndex(t, dir, img)
	// Breaks if images.txt is written from anything but the signed index.
	if d.String() != listedDigest {
		t.Errorf("layout index %s, images.txt %s", d, listedDigest)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, desc := range m.Manifests {
		got = append(got, desc.Platform.String())
	}
	// Breaks if a platform is dropped from the release's list or added.
	if !slices.Equal(got, platforms) {
		t.Fatalf("%s index platforms %v, want exactly %v", img, got, platforms)
	}
	sbomMods := sbomModules(t, dir, img)
	goMods := map[string]bool{}
	for _, desc := range m.Manifests {
		im, err := ii.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := im.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		// Breaks if the index labels an image with a platform its config
		// does not have (e.g. one config reused for both).
		if cf.OS+"/"+cf.Architecture != desc.Platform.String() {
			t.Errorf("%s %s: config says %s/%s", img, desc.Platform, cf.OS, cf.Architecture)
		}
		files := layerFiles(t, im)
		for _, b := range binaries[img] {
			data, ok := files[b]
			if !ok {
				t.Fatalf("%s %s: no /%s in the image (files: %v)", img, desc.Platform, b, keys(files))
			}
			// Breaks if goBuild ignores GOARCH (an amd64 binary in the
			// arm64 image): the ELF machine is the kernel's own check.
			ef, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s %s /%s: not an ELF file: %v", img, desc.Platform, b, err)
			}
			if want := machines[desc.Platform.Architecture]; ef.Machine != want || ef.Class != elf.ELFCLASS64 {
				t.Errorf("%s %s /%s: ELF %s %s, want %s 64-bit", img, desc.Platform, b, ef.Class, ef.Machine, want)
			}
			ef.Close()
			if desc.Platform.Architecture == runtime.GOARCH && b != "certs" {
				checkVersionStamp(t, data, b)
			}
			for _, mod := range goVersionM(t, data) {
				// Built without VCS stamping, the main module is
				// "(devel)" to Go; the SBOM names the release's version.
				if p, ok := strings.CutSuffix(mod, "@(devel)"); ok {
					mod = p + "@v" + version
				}
				goMods[mod] = true
			}
		}
	}
	// The SBOM lists every module go version -m shows for the binaries, and
	// nothing else. Breaks if SBOM skips b.Info.Deps or the main module.
	for mod := range goMods {
		if !sbomMods[mod] {
			t.Errorf("%s SBOM lacks %s, which go version -m lists", img, mod)
		}
	}
	for mod := range sbomMods {
		if !goMods[mod] {
			t.Errorf("%s SBOM lists %s, which no binary contains", img, mod)
		}
	}
	if len(goMods) < 3 {
		t.Errorf("%s: only %d modules from go version -m: %v", img, len(goMods), goMods)
	}
}

// layerFiles reads the regular files of an image's layers by name
// (without the leading /).
func layerFiles(t *testing.T, im v1.Image) map[string][]byte {
	t.Helper()
	layers, err := im.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				out[h.Name] = b
			}
		}
		rc.Close()
	}
	return out
}

// goVersionM runs `go version -m` on a binary and returns its modules as
// "path@version" (the replacement where one is given).
func goVersionM(t *testing.T, data []byte) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "version", "-m", f).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	var mods []string
	for _, l := range strings.Split(string(out), "\n") {
		fs := strings.Split(strings.TrimSpace(l), "\t")
		switch {
		case len(fs) >= 3 && (fs[0] == "mod" || fs[0] == "dep"):
			mods = append(mods, fs[1]+"@"+fs[2])
		case len(fs) >= 3 && fs[0] == "=>":
			mods[len(mods)-1] = fs[1] + "@" + fs[2]
		case strings.HasPrefix(l, f+": go"):
			mods = append(mods, "stdlib@"+strings.TrimPrefix(l, f+": "))
		}
	}
	return mods
}

// sbomModules reads sbom/IMG.spdx.json and returns its Go modules as
// "path@version", checking each carries a pkg:golang purl.
func sbomModules(t *testing.T, dir, img string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sbom", img+".spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name, VersionInfo, PrimaryPackagePurpose string
			ExternalRefs                             []struct{ ReferenceType, ReferenceLocator string }
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s SBOM: %v", img, err)
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("%s SBOM spdxVersion %q", img, doc.SPDXVersion)
	}
	out := map[string]bool{}
	for _, p := range doc.Packages {
		if p.PrimaryPackagePurpose != "LIBRARY" {
			continue
		}
		var purl string
		for _, r := range p.ExternalRefs {
			if r.ReferenceType == "purl" {
				purl = r.ReferenceLocator
			}
		}
		if !strings.HasPrefix(purl, "pkg:golang/") {
			t.Errorf("%s SBOM package %s@%s has no pkg:golang purl (%q)", img, p.Name, p.VersionInfo, purl)
		}
		out[p.Name+"@"+p.VersionInfo] = true
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkChart renders the packaged chart and compares every dnsguard image
// it names with images.txt; version and appVersion are the release's.
func checkChart(t *testing.T, e env, dir string, listed map[string]string) {
	tgz := filepath.Join(dir, "dnsguard-"+version+".tgz")
	out, err := e.run(t, nil, filepath.Join(e.bin, "helm"), "show", "chart", tgz)
	if err != nil {
		t.Fatalf("helm show chart: %v\n%s", err, out)
	}
	// Breaks if packageChart leaves the tree's version in place.
	for _, want := range []string{"\nversion: " + version + "\n", "\nappVersion: " + version + "\n"} {
		if !strings.Contains("\n"+out, want) {
			t.Errorf("packaged Chart.yaml lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	for img, d := range listed {
		if ref := "image: ghcr.io/dnsguard/" + img + ":" + version + "@" + d; !strings.Contains(out, ref) {
			t.Errorf("artifacthub.io/images annotation lacks %q:\n%s", ref, out)
		}
	}
	// artifacthub.io/changes lists every bullet of CHANGELOG.md's
	// [Unreleased] section (this release has no section of its own), counted
	// here independently of the release's parser. Breaks if packageChart
	// stops writing the annotation (0 entries; negative control run
	// 2026-12-07: "has 0 entries, ... 22 bullets") or drops a kind's list.
	changelog, err := os.ReadFile(filepath.Join(e.root, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	unreleased := string(changelog)[strings.Index(string(changelog), "\n## [Unreleased]")+1:]
	if end := strings.Index(unreleased[1:], "\n## "); end >= 0 {
		unreleased = unreleased[:end+1]
	}
	bullets := 0
	for _, l := range strings.Split(unreleased, "\n") {
		if strings.HasPrefix(l, "- ") {
			bullets++
		}
	}
	if got := strings.Count(out, "- kind: "); bullets == 0 || got != bullets {
		t.Errorf("artifacthub.io/changes has %d entries, CHANGELOG.md [Unreleased] %d bullets:\n%s", got, bullets, out)
	}
	// Every image of the rendered chart, node cache on so all three
	// values are used. Breaks if any of image, sidecar.image or
	// nodeCache.image is left unpinned or pinned to another digest.
	out, err = e.run(t, nil, filepath.Join(e.bin, "helm"), "template", "dnsguard", tgz,
		"--set", "nodeCache.enabled=true", "--set", "nodeCache.clusterDNS=10.96.0.10")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	refs := regexp.MustCompile(`[a-z0-9.\-]*/?dnsguard/(webhook|resolver)[^\s"']*`).FindAllStringSubmatch(out, -1)
	seen := map[string]int{}
	for _, r := range refs {
		if want := "ghcr.io/dnsguard/" + r[1] + "@" + listed[r[1]]; r[0] != want {
			t.Errorf("rendered chart names %q, want %q", r[0], want)
		}
		seen[r[1]]++
	}
	// webhook: Deployment, certificate controller, test pod; resolver:
	// the sidecar in the webhook's configuration and the DaemonSet.
	if seen["webhook"] < 2 || seen["resolver"] < 2 {
		t.Errorf("rendered chart references %v, want the webhook and the resolver image at least twice each", seen)
	}
}

// checkSums: sha256sum -c passes on the release and fails once a file
// changes. Run on the second release, which nothing else reads afterwards.
func checkSums(t *testing.T, dir string) {
	sums := func() (string, error) {
		cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sums()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if n := strings.Count(out, ": OK"); n < 10 {
		t.Errorf("SHA256SUMS checks only %d files:\n%s", n, out)
	}
	// Negative control: a changed file must fail the check.
	f, err := os.OpenFile(filepath.Join(dir, "notes.md"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "tampered")
	f.Close()
	if out, err := sums(); err == nil {
		t.Errorf("sha256sum -c passed after notes.md changed:\n%s", out)
	}
}

// cosign runs bin/cosign against a plain-HTTP registry, offline.
func cosign(e env, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(e.bin, "cosign"), args...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func verify(e env, pub, ref string, extra ...string) (string, error) {
	args := append([]string{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", "--allow-insecure-registry"}, extra...)
	return cosign(e, append(args, ref)...)
}

func verifyAtt(e env, pub, ref string) (string, error) {
	return cosign(e, "verify-attestation", "--type", "spdxjson", "--key", pub, "--insecure-ignore-tlog",
		"--allow-http-registry", "--allow-insecure-registry", ref)
}

// checkPublished publishes into a fresh registry, verifies, then shows the
// verification can fail: another key, a re-tagged digest, a swapped
// signature.
func checkPublished(ctx context.Context, t *testing.T, e env, dir string, listed map[string]string) {
	reg, err := loopreg.Start(ctx, filepath.Join(e.bin, "registry"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Stop(); err != nil {
			t.Error(err)
		}
	})
	if out, err := e.run(t, nil, "./hack/release.sh", "publish", dir, reg.Host); err != nil {
		t.Fatalf("hack/release.sh publish: %v\n%s", err, out)
	}
	pub := filepath.Join(dir, "cosign.pub")
	for _, img := range images {
		ref := reg.Host + "/dnsguard/" + img + "@" + listed[img]
		// Breaks if the layout loses the signature (e.g. publishing with
		// crane instead of cosign load) or signs another digest.
		if out, err := verify(e, pub, ref); err != nil {
			t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
		} else if !strings.Contains(out, `"docker-reference":"ghcr.io/dnsguard/`+img+`"`) {
			t.Errorf("signature of %s does not name ghcr.io/dnsguard/%s:\n%s", ref, img, out)
		}
		out, err := verifyAtt(e, pub, ref)
		if err != nil {
			t.Errorf("cosign verify-attestation %s: %v\n%s", ref, err, out)
			continue
		}
		// The attested predicate is the SBOM of sbom/. Breaks if Attest
		// is given another file.
		checkAttestedSBOM(t, out, filepath.Join(dir, "sbom", img+".spdx.json"))
	}

	// The chart's signature. Breaks if publish pushes the chart anew (helm
	// push stamps the time: a digest nobody signed) or signChart is skipped.
	chartRef := reg.Host + "/dnsguard/charts/dnsguard:" + version
	if out, err := verify(e, pub, chartRef); err != nil {
		t.Errorf("cosign verify %s: %v\n%s", chartRef, err, out)
	} else if !strings.Contains(out, `"docker-reference":"ghcr.io/dnsguard/charts/dnsguard"`) {
		t.Errorf("signature of %s does not name ghcr.io/dnsguard/charts/dnsguard:\n%s", chartRef, out)
	}

	// The chart is served as users install it.
	pulled := t.TempDir()
	if out, err := e.run(t, nil, filepath.Join(e.bin, "helm"), "pull", "oci://"+reg.Host+"/dnsguard/charts/dnsguard",
		"--version", version, "--plain-http", "--destination", pulled); err != nil {
		t.Errorf("helm pull: %v\n%s", err, out)
	} else {
		a, _ := os.ReadFile(filepath.Join(pulled, "dnsguard-"+version+".tgz"))
		b, _ := os.ReadFile(filepath.Join(dir, "dnsguard-"+version+".tgz"))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("the chart pulled from the registry (%d bytes) is not the release's (%d bytes)", len(a), len(b))
		}
	}

	// Negative control 1: a freshly generated key must not verify. Breaks
	// if --key were ignored (e.g. verification without a key).
	keyDir := t.TempDir()
	cmd := exec.Command(filepath.Join(e.bin, "cosign"), "generate-key-pair")
	cmd.Dir, cmd.Env = keyDir, append(os.Environ(), "COSIGN_PASSWORD=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	other := filepath.Join(keyDir, "cosign.pub")
	for _, img := range images {
		ref := reg.Host + "/dnsguard/" + img + "@" + listed[img]
		if out, err := verify(e, other, ref); err == nil {
			t.Errorf("cosign verify %s with another key passed:\n%s", ref, out)
		}
		if out, err := verifyAtt(e, other, ref); err == nil {
			t.Errorf("cosign verify-attestation %s with another key passed:\n%s", ref, out)
		}
	}
	if out, err := verify(e, other, chartRef); err == nil {
		t.Errorf("cosign verify %s with another key passed:\n%s", chartRef, out)
	}

	// Negative control 2: the tag re-pointed at another digest (the
	// webhook's amd64 manifest, never signed on its own) must fail.
	tagRef := reg.Host + "/dnsguard/webhook:" + version
	if out, err := verify(e, pub, tagRef); err != nil {
		t.Fatalf("cosign verify %s before tampering: %v\n%s", tagRef, err, out)
	}
	repo, err := name.NewRepository(reg.Host+"/dnsguard/webhook", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	amd64 := platformDigests(t, dir, "webhook")["linux/amd64"]
	child, err := remote.Image(repo.Digest(amd64), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag(version), child, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(e, pub, tagRef); err == nil {
		t.Errorf("cosign verify %s passed after the tag was moved to %s:\n%s", tagRef, amd64, out)
	}

	// Negative control 3: the resolver's valid signature placed where the
	// webhook's belongs must fail (it signs another digest).
	webhookSig := repo.Tag(strings.Replace(listed["webhook"], ":", "-", 1) + ".sig")
	resolverRepo, err := name.NewRepository(reg.Host+"/dnsguard/resolver", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := remote.Image(resolverRepo.Tag(strings.Replace(listed["resolver"], ":", "-", 1)+".sig"), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(webhookSig, sig, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(e, pub, reg.Host+"/dnsguard/webhook@"+listed["webhook"]); err == nil {
		t.Errorf("cosign verify of the webhook passed with the resolver's signature:\n%s", out)
	}
}

// checkAttestedSBOM decodes the in-toto statement cosign verify-attestation
// prints and compares its predicate with the SBOM file.
func checkAttestedSBOM(t *testing.T, out, sbomFile string) {
	t.Helper()
	var env struct{ Payload string }
	line := out[strings.Index(out, "{"):]
	if err := json.NewDecoder(strings.NewReader(line)).Decode(&env); err != nil {
		t.Fatalf("verify-attestation output: %v\n%s", err, out)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(sbomFile)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(st.Predicate, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != "https://spdx.dev/Document" || !reflect.DeepEqual(a, b) {
		t.Errorf("attested predicate (%s) is not %s", st.PredicateType, sbomFile)
	}
}

// checkProduct: the host-platform tarballs hack/images.sh gives the suites
// that import images (imagebuild product) are the release's images for
// that platform, byte for byte (same manifest digest). Breaks if the two
// paths drift apart (another compile flag, file mode or label).
func checkProduct(t *testing.T, e env, dir string) {
	out := t.TempDir()
	if o, err := e.run(t, nil, filepath.Join(e.bin, "imagebuild"), "product", "--tag", version, "--out", out); err != nil {
		t.Fatalf("imagebuild product: %v\n%s", err, o)
	}
	arch, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	platform := "linux/" + strings.TrimSpace(string(arch))
	for _, img := range images {
		want := platformDigests(t, dir, img)[platform]
		var idx v1.IndexManifest
		if err := json.Unmarshal(tarEntry(t, filepath.Join(out, img+".tar"), "index.json"), &idx); err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != want {
			t.Errorf("%s: imagebuild product gives %v, the release's %s manifest is %s", img, idx.Manifests, platform, want)
		}
	}
}

// tarEntry reads one file of a tar archive.
func tarEntry(t *testing.T, archive, name string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no %s (%v)", archive, name, err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// checkVersionStamp runs a released binary's --version: it must name the
// release and the commit it was cut from (cmd/buildinfo, stamped by
// goBuild). Breaks if goBuild drops the -X flags: the binary says "dev"
// (negative control run 2026-12-07: "webhook dev (commit unknown, ...)").
func checkVersionStamp(t *testing.T, data []byte, name string) {
	t.Helper()
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("/%s --version: %v", name, err)
	}
	want := name + " " + version + " (commit " + strings.TrimSpace(string(head))
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("/%s --version = %q, want it to start with %q", name, out, want)
	}
}
