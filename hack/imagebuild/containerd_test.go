package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestContainerdImport feeds both formats to containerd's own importer
// (core/images/archive.ImportIndex, what `ctr images import` and the CRI
// plugin's import call) over a real content store in a temporary directory
// — no containerd daemon needed. It names the image the way client.Import
// does (io.containerd.image.name, else org.opencontainers.image.ref.name)
// and checks the image resolves for linux/amd64 with every blob present,
// and that its config carries the user and entrypoint.
func TestContainerdImport(t *testing.T) {
	_, args := fixture(t)
	for _, format := range []string{FormatOCI, FormatDocker} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			out := filepath.Join(t.TempDir(), "webhook.tar")
			build(t, out, append(args, "--format", format)...)
			store, err := local.NewStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			idxDesc, err := archive.ImportIndex(ctx, store, f)
			if err != nil {
				t.Fatalf("containerd import: %v", err)
			}
			var idx ocispec.Index
			if err := readJSON(ctx, store, idxDesc, &idx); err != nil {
				t.Fatal(err)
			}
			if len(idx.Manifests) != 1 {
				t.Fatalf("imported index has %d manifests, want 1", len(idx.Manifests))
			}
			m := idx.Manifests[0]
			name := m.Annotations[images.AnnotationImageName]
			if name == "" {
				name = m.Annotations[ocispec.AnnotationRefName]
			}
			// The kubelet asks for dnsguard/webhook:0.1.0, which normalizes to this.
			if name != "docker.io/dnsguard/webhook:0.1.0" {
				t.Errorf("containerd would name the image %q, want docker.io/dnsguard/webhook:0.1.0", name)
			}
			img := images.Image{Name: name, Target: m}
			p := platforms.Only(ocispec.Platform{OS: "linux", Architecture: "amd64"})
			// Required: the config and the one layer.
			available, required, present, missing, err := images.Check(ctx, store, img.Target, p)
			if err != nil || !available || len(missing) != 0 || len(present) != len(required) || len(required) != 2 {
				t.Errorf("image check: available=%v required=%d present=%d missing=%v err=%v", available, len(required), len(present), missing, err)
			}
			cfgDesc, err := img.Config(ctx, store, p)
			if err != nil {
				t.Fatalf("config for linux/amd64: %v", err)
			}
			var cfg ocispec.Image
			if err := readJSON(ctx, store, cfgDesc, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Config.User != "65532:65532" || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/webhook", "--v=1"}) {
				t.Errorf("config as containerd reads it: %+v", cfg.Config)
			}
			diffIDs, err := img.RootFS(ctx, store, p)
			if err != nil || len(diffIDs) != 1 {
				t.Errorf("rootfs diff IDs %v, %v; want 1", diffIDs, err)
			}
		})
	}
}

func readJSON(ctx context.Context, store content.Provider, desc ocispec.Descriptor, v any) error {
	b, err := content.ReadBlob(ctx, store, desc)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
