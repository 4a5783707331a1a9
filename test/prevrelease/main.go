// Command prevrelease builds the release before the tree's for the e2e
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
//
//	prevrelease [-repo DIR] [-helm bin/helm] [-cache DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cmd", "prevrelease")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := run(ctx, os.Args[1:], log)
	if err != nil {
		log.Error("failed", "err", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}

func run(ctx context.Context, args []string, log *slog.Logger) (string, error) {
	fs := flag.NewFlagSet("prevrelease", flag.ContinueOnError)
	repo := fs.String("repo", ".", "the checkout: CHANGELOG.md, charts/dnsguard/Chart.yaml and the history holding the release's commit")
	helm := fs.String("helm", "bin/helm", "helm, to package the release's chart")
	cache := fs.String("cache", defaultCache(), "tool cache; the build goes to CACHE/releases/<commit>")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return "", err
	}
	helmPath, err := filepath.Abs(*helm)
	if err != nil {
		return "", err
	}
	changelog, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		return "", err
	}
	chart, err := os.ReadFile(filepath.Join(root, "charts", "dnsguard", "Chart.yaml"))
	if err != nil {
		return "", err
	}
	tree, err := treeVersion(string(chart))
	if err != nil {
		return "", fmt.Errorf("charts/dnsguard/Chart.yaml: %w", err)
	}
	releases, err := parseChangelog(string(changelog))
	if err != nil {
		return "", err
	}
	prev, err := previous(releases, tree)
	if err != nil {
		return "", err
	}
	log.Info("previous release", "tree", tree.String(), "previous", prev.Version.String(), "commit", prev.Commit)
	dir, _, err := builder{repo: root, helm: helmPath, log: log}.ensure(ctx, *cache, prev)
	return dir, err
}

// defaultCache is hack/build-tools.sh's cache directory.
func defaultCache() string {
	if d := os.Getenv("DNSGUARD_TOOLS_CACHE"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "dnsguard-tools")
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "dnsguard-tools")
}
