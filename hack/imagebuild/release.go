package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dnsguard/dnsguard/hack/imagebuild/internal/loopreg"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// releaseConfig is what `imagebuild release` is asked to do.
type releaseConfig struct {
	Root, Version, Dist, Bin, Cache, Command string
	AllowDirty                               bool
}

// runRelease is `imagebuild release`: the artifacts of one release in
// DIST/VERSION (layout: README.md's "Releases"; the e2e depends on it).
func runRelease(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagebuild release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c releaseConfig
	fs.StringVar(&c.Version, "version", "", "SemVer version of the release, e.g. 0.2.0 (required)")
	fs.StringVar(&c.Root, "root", ".", "the repository's top directory")
	fs.StringVar(&c.Dist, "dist", "dist", "the release goes to DIST/VERSION (replaced)")
	fs.StringVar(&c.Bin, "bin", "bin", "where cosign, registry and helm are (hack/build-tools.sh)")
	fs.StringVar(&c.Cache, "cache", "", "machine cache for the local signing key (default: the tool cache)")
	fs.StringVar(&c.Command, "command", "", "the command that cut the release, for the notes (default: this one)")
	fs.BoolVar(&c.AllowDirty, "allow-dirty", false, "release from a tree with modified tracked files (the notes say +dirty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.Command == "" {
		c.Command = "imagebuild release " + strings.Join(args, " ")
	}
	if c.Cache == "" {
		c.Cache = toolCache()
	}
	start := time.Now()
	out, err := release(context.Background(), c)
	if err != nil {
		return err
	}
	slog.Info("release written", "dir", out, "seconds", time.Since(start).Round(100*time.Millisecond).Seconds())
	return nil
}

// toolCache is hack/build-tools.sh's cache directory.
func toolCache() string {
	if d := os.Getenv("DNSGUARD_TOOLS_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "dnsguard-tools")
}

// tools checks every program the release runs before doing any work.
func (c releaseConfig) tools() (cosign, registry, helm string, err error) {
	var missing []string
	find := func(name string) string {
		p := filepath.Join(c.Bin, name)
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p+" (hack/build-tools.sh "+name+")")
		}
		return p
	}
	cosign, registry, helm = find("cosign"), find("registry"), find("helm")
	for _, t := range []string{"go", "git"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" (on PATH)")
		}
	}
	if len(missing) > 0 {
		return "", "", "", fmt.Errorf("missing tools: %s", strings.Join(missing, ", "))
	}
	return cosign, registry, helm, nil
}

// builtImage is one product image of the release, built for every platform.
type builtImage struct {
	productImage
	index v1.ImageIndex
	// digest of the index, what the chart pins and cosign signs.
	digest v1.Hash
	sbom   []byte
}

func release(ctx context.Context, c releaseConfig) (string, error) {
	if err := checkVersion(c.Version); err != nil {
		return "", err
	}
	cosignBin, registryBin, helm, err := c.tools()
	if err != nil {
		return "", err
	}
	commit, err := gitCommit(c.Root)
	if err != nil {
		return "", err
	}
	if commit.Dirty && !c.AllowDirty {
		return "", fmt.Errorf("tracked files are modified (git status): a release must be reproducible from its commit; commit first, or set ALLOW_DIRTY=1 for a trial release (its notes name the commit +dirty)")
	}
	if commit.Dirty {
		slog.Warn("releasing from a dirty tree (ALLOW_DIRTY=1): the notes say so", "commit", commit)
	}
	changelog, err := os.ReadFile(filepath.Join(c.Root, "CHANGELOG.md"))
	if err != nil {
		return "", err
	}
	section, heading, err := changelogSection(string(changelog), c.Version)
	if err != nil {
		return "", err
	}
	// The packaged chart's artifacthub.io/changes: what this release's
	// notes list, read before anything is built so a malformed section
	// fails at once.
	changes, err := sectionChanges(section)
	if err != nil {
		return "", fmt.Errorf("%s: %w", heading, err)
	}
	key, keyEnv, err := releaseKey(cosignBin, c.Cache)
	if err != nil {
		return "", err
	}
	cosign := Cosign{Bin: cosignBin, Key: key, Env: keyEnv}

	// Everything is written next to the final directory and renamed into
	// place at the end: a failed release leaves no partial one behind.
	final := filepath.Join(c.Dist, c.Version)
	if err := os.MkdirAll(c.Dist, 0o755); err != nil {
		return "", err
	}
	out, err := os.MkdirTemp(c.Dist, "."+c.Version+".")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(out)
	work, err := os.MkdirTemp("", "dnsguard-release-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	images, err := buildImages(c.Root, work, c.Version, commit)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(out, "sbom"), 0o755); err != nil {
		return "", err
	}
	for _, img := range images {
		if err := os.WriteFile(filepath.Join(out, "sbom", img.Name+".spdx.json"), img.sbom, 0o644); err != nil {
			return "", err
		}
	}
	// cosign signs in registries: a throw-away one on loopback holds the
	// images and the chart while they are signed and saved.
	reg, err := loopreg.Start(ctx, registryBin, nil)
	if err != nil {
		return "", err
	}
	defer reg.Stop()
	if err := signAndSave(ctx, reg.Host, cosign, out, c.Version, images); err != nil {
		return "", err
	}

	var pinned []pinnedImage
	var list strings.Builder
	for _, img := range images {
		p := pinnedImage{Name: img.Name, Digest: img.digest.String()}
		pinned = append(pinned, p)
		fmt.Fprintln(&list, p.ref(c.Version))
	}
	tgz, err := packageChart(helm, filepath.Join(c.Root, "charts", "dnsguard"), out, c.Version, pinned, changes)
	if err != nil {
		return "", err
	}
	if err := signChart(helm, cosign, reg.Host, tgz, filepath.Join(out, "chart")); err != nil {
		return "", err
	}
	if err := reg.Stop(); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(out, "images.txt"), []byte(list.String()), 0o644); err != nil {
		return "", err
	}
	if err := publicKey(cosign, filepath.Join(out, "cosign.pub")); err != nil {
		return "", err
	}
	notes := releaseNotes(c.Version, section, commit, runtime.Version(), c.Command)
	if err := os.WriteFile(filepath.Join(out, "notes.md"), []byte(notes), 0o644); err != nil {
		return "", err
	}
	if err := writeSums(out); err != nil {
		return "", err
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(out, final); err != nil {
		return "", err
	}
	slog.Info("release", "version", c.Version, "commit", commit, "notes", heading, "images", strings.TrimSpace(list.String()))
	return final, nil
}

// buildImages cross-compiles the commands for every platform and builds
// each product image's index and SBOM.
func buildImages(root, work, version string, commit Commit) ([]builtImage, error) {
	binDirs := map[string]string{}
	for _, pl := range Platforms {
		dir := filepath.Join(work, strings.ReplaceAll(pl, "/", "-"))
		slog.Info("compiling", "platform", pl, "commands", commands())
		if err := goBuild(root, pl, dir, version, commit.String()); err != nil {
			return nil, err
		}
		binDirs[pl] = dir
	}
	var out []builtImage
	for _, p := range productImages {
		var imgs []v1.Image
		var bins []SBOMBinary
		for _, pl := range Platforms {
			s, err := p.spec(version, commit.String(), pl, binDirs[pl], commit.Time)
			if err != nil {
				return nil, err
			}
			img, err := Build(s)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.Name, pl, err)
			}
			imgs = append(imgs, img)
			for _, f := range s.Files {
				data, err := os.ReadFile(f.Src)
				if err != nil {
					return nil, err
				}
				b, err := ReadSBOMBinary(f.Src, f.Dst, pl, data)
				if err != nil {
					return nil, err
				}
				bins = append(bins, b)
			}
		}
		idx, err := Index(imgs)
		if err != nil {
			return nil, err
		}
		d, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		sbom, err := SBOM(Repository+"/"+p.Name+":"+version, d.String(), commit.String(), bins, time.Unix(commit.Time, 0))
		if err != nil {
			return nil, err
		}
		slog.Info("image index", "image", Repository+"/"+p.Name+":"+version, "digest", d, "platforms", Platforms)
		out = append(out, builtImage{productImage: p, index: idx, digest: d, sbom: sbom})
	}
	return out, nil
}

// signAndSave pushes each index into a loopback registry, signs it and
// attests its SBOM there (cosign works on registries), and saves index,
// signature and attestation as the OCI layout out/images/NAME.
func signAndSave(ctx context.Context, host string, cosign Cosign, out, version string, images []builtImage) error {
	for _, img := range images {
		tag, err := name.NewTag(host+"/dnsguard/"+img.Name+":"+version, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(tag, img.index, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing %s: %w", tag, err)
		}
		byDigest := tag.Context().Digest(img.digest.String()).String()
		identity := Repository + "/" + img.Name
		slog.Info("signing", "image", byDigest, "identity", identity)
		if err := cosign.Sign(byDigest, identity); err != nil {
			return err
		}
		if err := cosign.Attest(byDigest, filepath.Join(out, "sbom", img.Name+".spdx.json")); err != nil {
			return err
		}
		dir := filepath.Join(out, "images", img.Name)
		if err := cosign.Save(byDigest, dir); err != nil {
			return err
		}
		if err := checkLayout(dir, img.digest); err != nil {
			return err
		}
	}
	return nil
}

// checkLayout makes sure the saved layout holds the index that was signed:
// cosign save writes what the registry returned.
func checkLayout(dir string, want v1.Hash) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, d := range m.Manifests {
		if d.Digest == want {
			return nil
		}
	}
	return fmt.Errorf("%s: the layout does not hold the signed index %s", dir, want)
}
