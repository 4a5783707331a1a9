package main

// imagebuild previous builds the release before the tree's for the e2e
// suite's upgrade scenario (u1) and prints the directory that holds it.
//
// The previous release is the newest one CHANGELOG.md records with a
// version below the tree's chart version; CHANGELOG.md names the commit it
// was cut from. It is built from that commit in a git worktree with the
// commit's own build (make build, hack/images.sh product: image tarballs
// under the names its chart's defaults use) and its chart packaged with
// helm, and kept in the tool cache by commit
// ($DNSGUARD_TOOLS_CACHE/releases/<commit>/, release.json lists what is
// there), so a warm run does not rebuild it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func runPrevious(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("imagebuild previous", flag.ContinueOnError)
	repo := fs.String("repo", ".", "the checkout: CHANGELOG.md, charts/dnsguard/Chart.yaml and the history holding the release's commit")
	helm := fs.String("helm", "bin/helm", "helm, to package the release's chart")
	cache := fs.String("cache", toolCache(), "tool cache; the build goes to CACHE/releases/<commit>")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	helmPath, err := filepath.Abs(*helm)
	if err != nil {
		return err
	}
	changelog, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		return err
	}
	chart, err := os.ReadFile(filepath.Join(root, "charts", "dnsguard", "Chart.yaml"))
	if err != nil {
		return err
	}
	tree, err := treeVersion(string(chart))
	if err != nil {
		return fmt.Errorf("charts/dnsguard/Chart.yaml: %w", err)
	}
	releases, err := parseChangelog(string(changelog))
	if err != nil {
		return err
	}
	prev, err := previous(releases, tree)
	if err != nil {
		return err
	}
	log.Info("previous release", "tree", tree.String(), "previous", prev.Version.String(), "commit", prev.Commit)
	dir, _, err := prevBuilder{repo: root, helm: helmPath, log: log}.ensure(ctx, *cache, prev)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, dir)
	return err
}

// prevManifest is release.json in a cached release directory: what the e2e
// suite installs (the chart) and loads into containerd (the images, under
// the names the chart's defaults use).
type prevManifest struct {
	Version string      `json:"version"`
	Commit  string      `json:"commit"`
	Chart   string      `json:"chart"` // file name in the directory
	Images  []prevImage `json:"images"`
	// Built is when and how long the build took (for the log of a warm run).
	Built   time.Time `json:"built"`
	BuildMS int64     `json:"buildMs"`
}

type prevImage struct {
	Ref  string `json:"ref"`  // e.g. dnsguard/webhook:0.1.0
	File string `json:"file"` // tarball, relative to the directory
}

const manifestName = "release.json"

// loadCached returns the manifest of dir when dir holds a complete build.
func loadCached(dir string) (*prevManifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var m prevManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, manifestName), err)
	}
	files := []string{m.Chart}
	for _, im := range m.Images {
		files = append(files, im.File)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("cached release %s is incomplete: %w", dir, err)
		}
	}
	return &m, nil
}

// prevBuilder builds a release from its commit in a git worktree of repo, with
// that commit's own build (make build, hack/images.sh product) and the
// tree's helm to package its chart.
type prevBuilder struct {
	repo string // the checkout whose history holds the commit
	helm string
	log  *slog.Logger
}

// ensure returns the directory of r's build in cache, building it first
// unless a complete build is there.
func (b prevBuilder) ensure(ctx context.Context, cache string, r recorded) (string, *prevManifest, error) {
	dir := filepath.Join(cache, "releases", r.Commit)
	if m, err := loadCached(dir); err == nil {
		b.log.Info("previous release cached", "version", m.Version, "dir", dir, "built", m.Built.Format(time.RFC3339))
		return dir, m, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.log.Warn("rebuilding", "reason", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+r.Commit[:12]+"-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	m, err := b.build(ctx, r, tmp)
	if err != nil {
		return "", nil, fmt.Errorf("build release %s from %s: %w", r.Version, r.Commit[:12], err)
	}
	m.Built, m.BuildMS = time.Now().UTC(), time.Since(start).Milliseconds()
	j, _ := json.MarshalIndent(m, "", "  ")
	out := filepath.Join(tmp, "out")
	if err := os.WriteFile(filepath.Join(out, manifestName), append(j, '\n'), 0o644); err != nil {
		return "", nil, err
	}
	// A stale or incomplete directory is replaced; a complete one another
	// run finished meanwhile is kept.
	if _, err := loadCached(dir); err != nil {
		_ = os.RemoveAll(dir)
		if err := os.Rename(out, dir); err != nil {
			return "", nil, fmt.Errorf("move the build into the cache: %w", err)
		}
	}
	b.log.Info("previous release built", "version", m.Version, "dir", dir, "took", time.Since(start).Round(time.Second))
	return dir, m, nil
}

// build makes r's images and chart in tmp/out from a worktree in tmp/src.
func (b prevBuilder) build(ctx context.Context, r recorded, tmp string) (*prevManifest, error) {
	src, out := filepath.Join(tmp, "src"), filepath.Join(tmp, "out")
	if err := os.MkdirAll(filepath.Join(out, "images"), 0o755); err != nil {
		return nil, err
	}
	// A worktree a killed run left registered would block nothing (a new
	// path each time), but prune keeps `git worktree list` honest.
	if err := b.run(ctx, b.repo, nil, "git", "worktree", "prune"); err != nil {
		return nil, err
	}
	if err := b.run(ctx, b.repo, nil, "git", "worktree", "add", "--detach", src, r.Commit); err != nil {
		return nil, err
	}
	defer func() {
		if err := b.run(context.WithoutCancel(ctx), b.repo, nil, "git", "worktree", "remove", "--force", src); err != nil {
			b.log.Warn("remove worktree", "err", err)
		}
	}()
	// Its own build: the commit's Makefile and image script, engine-less
	// (hack/imagebuild) so the digests do not depend on a container engine
	// being installed.
	if err := b.run(ctx, src, nil, "make", "build"); err != nil {
		return nil, err
	}
	if err := b.run(ctx, src, []string{"IMAGES_DIR=" + filepath.Join(out, "images"), "ENGINE=imagebuild"}, "./hack/images.sh", "product"); err != nil {
		return nil, err
	}
	images, err := readImageList(filepath.Join(out, "images", "images.txt"), out)
	if err != nil {
		return nil, err
	}
	if err := b.run(ctx, src, nil, b.helm, "package", filepath.Join(src, "charts", "dnsguard"), "--destination", out); err != nil {
		return nil, err
	}
	chart := "dnsguard-" + r.Version.String() + ".tgz"
	if _, err := os.Stat(filepath.Join(out, chart)); err != nil {
		return nil, fmt.Errorf("helm package did not write %s (the commit's Chart.yaml must carry version %s): %w", chart, r.Version, err)
	}
	return &prevManifest{Version: r.Version.String(), Commit: r.Commit, Chart: chart, Images: images}, nil
}

// readImageList reads hack/images.sh's images.txt ("REFERENCE FILE" per
// line) with the files made relative to base.
func readImageList(path, base string) ([]prevImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []prevImage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s: line %q: want REFERENCE FILE", path, sc.Text())
		}
		rel, err := filepath.Rel(base, fields[1])
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("%s: %s is outside %s", path, fields[1], base)
		}
		out = append(out, prevImage{Ref: fields[0], File: rel})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no image", path)
	}
	return out, nil
}

// run runs a command in dir; its output goes to the log only when it fails
// (a cold build is long and quiet otherwise).
func (b prevBuilder) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	b.log.Info("ran", "cmd", name+" "+strings.Join(args, " "), "dir", dir, "took", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		return fmt.Errorf("%s %s (in %s): %w\n%s", name, strings.Join(args, " "), dir, err, tail(out.String(), 40))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
