package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// runProduct is `imagebuild product`: the release's images for this
// machine's platform only, as image tarballs named like the chart's
// defaults, for suites that import images instead of pulling them. The
// binaries, files and labels are the release's (same code), so a tarball's
// manifest is the release's manifest for that platform when commit, epoch
// and tag are the same. Prints "REFERENCE FILE" per image.
func runProduct(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagebuild product", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "the repository's top directory")
	out := fs.String("out", "bin/images", "directory for NAME.tar")
	tag := fs.String("tag", "", "image tag, e.g. the chart's appVersion (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tag == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: imagebuild product --tag TAG [--out DIR] [--root DIR]")
	}
	commit, err := gitCommit(*root)
	if err != nil {
		return err
	}
	epoch, err := epochFromEnv()
	if err != nil {
		return err
	}
	if epoch == 0 {
		epoch = commit.Time
	}
	work, err := os.MkdirTemp("", "dnsguard-product-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	platform := "linux/" + runtime.GOARCH
	if err := goBuild(*root, platform, work, *tag, commit.String()); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, p := range productImages {
		s, err := p.spec(*tag, commit.String(), platform, work, epoch)
		if err != nil {
			return err
		}
		s.Out, s.Format = filepath.Join(*out, p.Name+".tar"), FormatOCI
		if err := writeSpec(s, io.Discard); err != nil {
			return err
		}
		fmt.Fprintln(stdout, s.Name, s.Out)
	}
	return nil
}
