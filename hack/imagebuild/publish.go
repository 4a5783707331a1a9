package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// runPublish is `imagebuild publish DIR HOST:PORT`: the release in DIR
// pushed into the plain-HTTP registry at HOST:PORT as
// HOST:PORT/dnsguard/NAME:VERSION (index, signature and SBOM attestation)
// and oci://HOST:PORT/dnsguard/charts/dnsguard:VERSION.
func runPublish(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagebuild publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin", "where cosign and helm are (hack/build-tools.sh)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: imagebuild publish [--bin DIR] RELEASE_DIR HOST:PORT")
	}
	return publish(context.Background(), fs.Arg(0), fs.Arg(1), filepath.Join(*bin, "cosign"), filepath.Join(*bin, "helm"))
}

// releasedImage is one line of images.txt.
type releasedImage struct {
	Name, Version, Digest string
}

// readImagesTxt parses images.txt (ghcr.io/dnsguard/NAME:VERSION@sha256:...).
func readImagesTxt(path string) ([]releasedImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []releasedImage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ref, digest, ok := strings.Cut(line, "@")
		repo, version, ok2 := strings.Cut(strings.TrimPrefix(ref, Repository+"/"), ":")
		if !ok || !ok2 || !strings.HasPrefix(ref, Repository+"/") || !strings.HasPrefix(digest, "sha256:") {
			return nil, fmt.Errorf("%s: line %q is not %s/NAME:VERSION@sha256:HEX", path, line, Repository)
		}
		out = append(out, releasedImage{Name: repo, Version: version, Digest: digest})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no image", path)
	}
	return out, nil
}

func publish(ctx context.Context, dir, host, cosignBin, helm string) error {
	if _, err := os.Stat(filepath.Join(dir, "chart", "index.json")); err != nil {
		return fmt.Errorf("%s is not a release directory (no chart/ layout): %w", dir, err)
	}
	images, err := readImagesTxt(filepath.Join(dir, "images.txt"))
	if err != nil {
		return err
	}
	c := Cosign{Bin: cosignBin}
	for _, img := range images {
		tag, err := name.NewTag(host+"/dnsguard/"+img.Name+":"+img.Version, name.Insecure)
		if err != nil {
			return fmt.Errorf("%s: %w", host, err)
		}
		slog.Info("publishing", "image", tag.String())
		if err := c.Load(filepath.Join(dir, "images", img.Name), tag.String()); err != nil {
			return err
		}
		// The tag must name the released digest: a layout holding some
		// other index would otherwise be published under the version.
		desc, err := remote.Head(tag, remote.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("%s after cosign load: %w", tag, err)
		}
		if desc.Digest.String() != img.Digest {
			return fmt.Errorf("%s is %s after cosign load, images.txt says %s", tag, desc.Digest, img.Digest)
		}
	}
	charts, err := filepath.Glob(filepath.Join(dir, "dnsguard-*.tgz"))
	if err != nil || len(charts) != 1 {
		return fmt.Errorf("%s: want exactly one dnsguard-*.tgz, found %v", dir, charts)
	}
	// The signed chart manifest, loaded as saved (helm push would make a
	// new manifest, stamped with the time, that no signature covers).
	ref := host + "/dnsguard/charts/dnsguard:" + images[0].Version
	slog.Info("publishing", "chart", charts[0], "to", "oci://"+ref)
	if err := c.Load(filepath.Join(dir, "chart"), ref); err != nil {
		return err
	}
	// helm reads it back as users will; the bytes must be the release's.
	tmp, err := os.MkdirTemp("", "dnsguard-publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(helm, "pull", "oci://"+host+"/dnsguard/charts/dnsguard", "--version", images[0].Version,
		"--plain-http", "--destination", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm pull after publishing: %w: %s", err, out)
	}
	a, err := os.ReadFile(filepath.Join(tmp, filepath.Base(charts[0])))
	if err != nil {
		return fmt.Errorf("helm pull after publishing: %w", err)
	}
	b, err := os.ReadFile(charts[0])
	if err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return fmt.Errorf("the chart helm pulls from %s is not %s", ref, charts[0])
	}
	return nil
}
