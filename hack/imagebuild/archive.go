package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Archive formats.
const (
	// FormatOCI is what `docker save` writes since Docker 25: an OCI image
	// layout (oci-layout, index.json, blobs/sha256/...) plus the legacy
	// manifest.json pointing at the same blobs. containerd's importer
	// (`ctr images import`) reads the layout and names the image from the
	// io.containerd.image.name annotation; `docker load`, `podman load`,
	// go-containerregistry's tarball package and `crane push` read
	// manifest.json.
	FormatOCI = "oci"
	// FormatDocker is go-containerregistry's tarball.Write: manifest.json,
	// the config and gzipped layers only (the pre-25 `docker save` format,
	// which containerd imports as well).
	FormatDocker = "docker"
)

// containerdName is the fully qualified name containerd (and the kubelet)
// use for ref: docker.io/dnsguard/webhook:0.1.0 for dnsguard/webhook:0.1.0.
func containerdName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

// WriteFile writes img, named ref, to path in the given format, through a
// temporary file renamed into place so a failed run leaves no partial
// tarball behind.
func WriteFile(path string, ref name.Tag, img v1.Image, format string) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer os.Remove(tmp.Name())
	switch format {
	case FormatOCI:
		err = writeOCIArchive(tmp, ref, img)
	case FormatDocker:
		err = tarball.Write(ref, img, tmp)
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// dockerManifestEntry is one element of manifest.json (docker save).
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeOCIArchive writes the Docker-25 `docker save` layout. Every tar
// header is fixed (mode 0644/0755, owner 0, mtime 0), so the archive is as
// reproducible as the image.
func writeOCIArchive(w io.Writer, ref name.Tag, img v1.Image) error {
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mDigest, err := img.Digest()
	if err != nil {
		return err
	}
	mType, err := img.MediaType()
	if err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755})
	}
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes, expected %d", name, n, size)
		}
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	if err := file(blobPath(cfgName), int64(len(rawConfig)), bytes.NewReader(rawConfig)); err != nil {
		return err
	}
	entry := dockerManifestEntry{Config: blobPath(cfgName), RepoTags: []string{ref.String()}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blobPath(d), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
		entry.Layers = append(entry.Layers, blobPath(d))
	}
	if err := file(blobPath(mDigest), int64(len(rawManifest)), bytes.NewReader(rawManifest)); err != nil {
		return err
	}

	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mType,
			Digest:    mDigest,
			Size:      int64(len(rawManifest)),
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
			Annotations: map[string]string{
				"io.containerd.image.name":          containerdName(ref),
				"org.opencontainers.image.ref.name": ref.TagStr(),
			},
		}},
	}
	for _, f := range []struct {
		name string
		v    any
	}{
		{"index.json", index},
		{"manifest.json", []dockerManifestEntry{entry}},
		{"oci-layout", map[string]string{"imageLayoutVersion": "1.0.0"}},
	} {
		b, err := json.Marshal(f.v)
		if err != nil {
			return err
		}
		if err := file(f.name, int64(len(b)), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	return tw.Close()
}
