// Command imagebuild builds container images without a container engine.
//
//   - imagebuild release: dnsguard's releases (make release): the product
//     images for linux/amd64 and linux/arm64 as OCI image indexes, SBOMs,
//     cosign signatures and attestations, the chart pinned to them
//     (release.go); imagebuild publish pushes one into a registry.
//   - imagebuild previous: builds the release CHANGELOG.md records before
//     the tree's, from its commit, for the upgrade test (previous.go).
//   - imagebuild product: the same product images for this machine's
//     platform as tarballs, for suites that import images (hack/images.sh).
//   - imagebuild --name ...: a single-layer image from files on this
//     machine: the e2e suite's test client images (a dynamic glibc client
//     with the libraries ldd lists) and helper images (pause, CoreDNS).
//
// The tarball is the layout `docker save` writes since Docker 25 (OCI image
// layout plus manifest.json), accepted by `ctr images import`, `docker
// load`, `podman load` and `crane push`. See usage below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
)

const usage = `imagebuild: build a one-layer container image tarball from local files.

Usage:
  imagebuild --name REF --out FILE --file SRC:DST[:MODE]... [options]
  imagebuild release --version X.Y.Z [--dist DIR] ...   (make release; release --help)
  imagebuild publish RELEASE_DIR HOST:PORT              (hack/release.sh publish)
  imagebuild product --tag TAG [--out DIR]              (hack/images.sh)
  imagebuild previous [--repo DIR] [--helm BIN] [--cache DIR]  (hack/e2e.sh: the release before the tree's)

Example (the Dockerfile's webhook target):
  imagebuild --name dnsguard/webhook:0.1.0 --out bin/images/webhook.tar \
    --file bin/webhook:/webhook --file bin/certs:/certs \
    --entrypoint /webhook --user 65532:65532 --port 8443/tcp \
    --label org.opencontainers.image.version=0.1.0

Every file is owned by 0:0, mode 0555 if the source is executable, else 0444
(or MODE), with the same mtime (SOURCE_DATE_EPOCH, else 0): building twice
from the same inputs gives the same image digest. Executables are checked
against --platform, and a dynamically linked one is refused unless its loader
is in the image (--with-libs adds the loader and libraries ldd lists).

Flags:
`

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "release":
		err = runRelease(os.Args[2:], os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "publish":
		err = runPublish(os.Args[2:], os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "product":
		err = runProduct(os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "previous":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = runPrevious(ctx, os.Args[2:], os.Stdout, slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cmd", "imagebuild previous"))
		stop()
	default:
		err = run(os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	s, _, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return writeSpec(s, stdout)
}

// writeSpec builds the image s describes and writes it to s.Out.
func writeSpec(s Spec, stdout io.Writer) error {
	ref, err := name.NewTag(s.Name)
	if err != nil {
		return fmt.Errorf("--name %q: %w", s.Name, err)
	}
	img, err := Build(s)
	if err != nil {
		return err
	}
	if err := WriteFile(s.Out, ref, img, s.Format); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	st, err := os.Stat(s.Out)
	if err != nil {
		return err
	}
	// The manifest digest is what containerd records for the OCI layout;
	// the image ID (config digest) is what docker, podman and crictl show.
	// (The docker format has no manifest of its own: readers synthesize one.)
	if s.Format == FormatDocker {
		fmt.Fprintf(stdout, "imagebuild: %s -> %s (%s/%s, %d bytes, id %s)\n", s.Name, s.Out, s.OS, s.Arch, st.Size(), id)
		return nil
	}
	fmt.Fprintf(stdout, "imagebuild: %s -> %s (%s/%s, %d bytes, manifest %s, id %s)\n", s.Name, s.Out, s.OS, s.Arch, st.Size(), digest, id)
	return nil
}

// parseFlags turns the command line into a validated Spec; every error names
// the flag and the value at fault.
func parseFlags(args []string, stderr io.Writer) (Spec, name.Tag, error) {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		files, args2, cmd, ports, env, labels multi
		s                                     Spec
		entrypoint, platform                  string
	)
	fs.StringVar(&s.Name, "name", "", "image reference with an explicit tag, e.g. dnsguard/webhook:0.1.0 (required)")
	fs.StringVar(&s.Out, "out", "", "output tarball path (required)")
	fs.Var(&files, "file", "SRC:DST[:MODE] a regular file to add at absolute path DST; repeatable (at least one)")
	fs.StringVar(&entrypoint, "entrypoint", "", "executable the container runs, e.g. /webhook")
	fs.Var(&args2, "arg", "argument appended to the entrypoint; repeatable")
	fs.Var(&cmd, "cmd", "default arguments (the image's Cmd); repeatable")
	fs.StringVar(&s.User, "user", "", "numeric UID[:GID] the container runs as, e.g. 65532:65532 (default: root)")
	fs.Var(&ports, "port", "PORT[/PROTO] exposed port, e.g. 8443/tcp; repeatable")
	fs.Var(&env, "env", "KEY=VALUE environment variable; repeatable (PATH defaults to the usual one)")
	fs.StringVar(&s.WorkingDir, "workdir", "", "working directory (default /)")
	fs.Var(&labels, "label", "KEY=VALUE image label, e.g. org.opencontainers.image.version=0.1.0; repeatable")
	fs.StringVar(&platform, "platform", "linux/"+runtime.GOARCH, "OS/ARCH[/VARIANT] of the image; executables must match it")
	fs.BoolVar(&s.WithLibs, "with-libs", false, "add the shared libraries and loader (as listed by ldd on this machine) of every dynamic executable, at their paths")
	fs.StringVar(&s.Format, "format", FormatOCI, "tarball layout: oci (Docker 25 `docker save`: OCI layout + manifest.json) or docker (manifest.json only)")
	if err := fs.Parse(args); err != nil {
		return Spec{}, name.Tag{}, err
	}
	if fs.NArg() > 0 {
		return Spec{}, name.Tag{}, fmt.Errorf("unexpected argument %q (every input is a flag; see --help)", fs.Arg(0))
	}

	if s.Name == "" {
		return Spec{}, name.Tag{}, errors.New("--name is required")
	}
	ref, err := name.NewTag(s.Name)
	if err != nil {
		return Spec{}, name.Tag{}, fmt.Errorf("--name %q: %w", s.Name, err)
	}
	// An implicit :latest makes the kubelet pull instead of using the
	// imported image (imagePullPolicy defaults to Always for :latest).
	if last := s.Name[strings.LastIndex(s.Name, "/")+1:]; !strings.Contains(last, ":") {
		return Spec{}, name.Tag{}, fmt.Errorf("--name %q: give an explicit tag, e.g. %s:0.1.0", s.Name, s.Name)
	}
	if s.Out == "" {
		return Spec{}, name.Tag{}, errors.New("--out is required")
	}
	if len(files) == 0 {
		return Spec{}, name.Tag{}, errors.New("at least one --file is required")
	}
	for _, f := range files {
		pf, err := parseFile(f)
		if err != nil {
			return Spec{}, name.Tag{}, err
		}
		s.Files = append(s.Files, pf)
	}
	if entrypoint != "" {
		if err := checkDst(entrypoint); err != nil {
			return Spec{}, name.Tag{}, fmt.Errorf("--entrypoint: %w", err)
		}
		s.Entrypoint = append([]string{entrypoint}, args2...)
	} else if len(args2) > 0 {
		return Spec{}, name.Tag{}, errors.New("--arg needs --entrypoint")
	}
	s.Cmd = cmd
	if err := checkUser(s.User); err != nil {
		return Spec{}, name.Tag{}, err
	}
	for _, p := range ports {
		pp, err := parsePort(p)
		if err != nil {
			return Spec{}, name.Tag{}, err
		}
		s.Ports = append(s.Ports, pp)
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return Spec{}, name.Tag{}, fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	s.Env = env
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return Spec{}, name.Tag{}, fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[k] = v
	}
	if s.OS, s.Arch, s.Variant, err = parsePlatform(platform); err != nil {
		return Spec{}, name.Tag{}, err
	}
	if s.Format != FormatOCI && s.Format != FormatDocker {
		return Spec{}, name.Tag{}, fmt.Errorf("--format %q: want oci or docker", s.Format)
	}
	if s.Epoch, err = epochFromEnv(); err != nil {
		return Spec{}, name.Tag{}, err
	}
	return s, ref, nil
}
