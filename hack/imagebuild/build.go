package main

import (
	"bytes"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// defaultPath is the PATH BuildKit puts into images built FROM scratch, so
// these images match what `docker build` makes from the Dockerfile.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build makes the single-layer image a Spec describes. The result depends
// only on the Spec and the files' contents: building twice gives the same
// digest.
func Build(s Spec) (v1.Image, error) {
	files, err := readFiles(s.Files)
	if err != nil {
		return nil, err
	}
	if s.WithLibs {
		if files, err = withLibs(files); err != nil {
			return nil, err
		}
	}
	if err := checkELF(files, s.Arch); err != nil {
		return nil, err
	}
	raw, err := layerTar(files, s.Epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}

	created := v1.Time{Time: time.Unix(s.Epoch, 0).UTC()}
	env := s.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	cfg := v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		User:       s.User,
		Env:        env,
		WorkingDir: s.WorkingDir,
		Labels:     s.Labels,
	}
	if len(s.Ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: s.Arch,
		OS:           s.OS,
		Variant:      s.Variant,
		Created:      created,
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   created,
			CreatedBy: "imagebuild (hack/imagebuild)",
			Comment:   fmt.Sprintf("%d files", len(files)),
		},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, fmt.Errorf("appending layer: %w", err)
	}
	return img, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if len(e) > len(key) && e[:len(key)+1] == key+"=" {
			return true
		}
	}
	return false
}
