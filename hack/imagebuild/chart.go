package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// chartImage is one image reference of the chart: the values that pin it
// and the image it names.
type chartImage struct {
	values []string // path of the repository/digest block in values.yaml
	image  string   // productImage.Name
}

var chartImages = []chartImage{
	{[]string{"image"}, "webhook"},
	{[]string{"sidecar", "image"}, "resolver"},
	{[]string{"nodeCache", "image"}, "resolver"},
}

// pinnedImage is a released image: name and index digest.
type pinnedImage struct {
	Name, Digest string
}

func (p pinnedImage) ref(version string) string {
	return Repository + "/" + p.Name + ":" + version + "@" + p.Digest
}

// packageChart writes the chart in chartDir as dest/dnsguard-VERSION.tgz,
// with version = appVersion = VERSION, every default image pinned by
// digest, and the Artifact Hub images annotation naming them. The source
// tree is not modified: a copy is edited and packaged.
func packageChart(helm, chartDir, dest, version string, images []pinnedImage, changes []change) (string, error) {
	tmp, err := os.MkdirTemp("", "dnsguard-chart-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, filepath.Base(chartDir))
	if err := os.CopyFS(work, os.DirFS(chartDir)); err != nil {
		return "", fmt.Errorf("copying the chart: %w", err)
	}
	digests := map[string]string{}
	for _, p := range images {
		digests[p.Name] = p.Digest
	}
	err = editFile(filepath.Join(work, "values.yaml"), func(s string) (string, error) {
		for _, ci := range chartImages {
			d, ok := digests[ci.image]
			if !ok {
				return "", fmt.Errorf("no digest for image %s", ci.image)
			}
			var err error
			if s, err = setYAML(s, append(ci.values[:len(ci.values):len(ci.values)], "repository"), Repository+"/"+ci.image); err != nil {
				return "", err
			}
			if s, err = setYAML(s, append(ci.values[:len(ci.values):len(ci.values)], "digest"), d); err != nil {
				return "", err
			}
		}
		return s, nil
	})
	if err != nil {
		return "", err
	}
	err = editFile(filepath.Join(work, "Chart.yaml"), func(s string) (string, error) {
		var err error
		if s, err = setYAML(s, []string{"version"}, version); err != nil {
			return "", err
		}
		if s, err = setYAML(s, []string{"appVersion"}, version); err != nil {
			return "", err
		}
		s = setAnnotation(s, "artifacthub.io/images", artifactHubImages(version, images))
		return setAnnotation(s, "artifacthub.io/changes", artifactHubChanges(changes)), nil
	})
	if err != nil {
		return "", err
	}
	cmd := exec.Command(helm, "package", work, "--destination", dest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("helm package: %w: %s", err, out)
	}
	tgz := filepath.Join(dest, "dnsguard-"+version+".tgz")
	if _, err := os.Stat(tgz); err != nil {
		return "", fmt.Errorf("helm package wrote no %s: %w", tgz, err)
	}
	return tgz, nil
}

// editFile rewrites path through fn.
func editFile(path string, fn func(string) (string, error)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s, err := fn(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, []byte(s), fs.FileMode(0o644))
}

// artifactHubImages is the annotation's YAML list: one entry per image,
// pinned by digest, with its platforms.
func artifactHubImages(version string, images []pinnedImage) string {
	var b strings.Builder
	for _, p := range images {
		fmt.Fprintf(&b, "- name: %s\n  image: %s\n  platforms:\n", p.Name, p.ref(version))
		for _, pl := range Platforms {
			fmt.Fprintf(&b, "    - %s\n", pl)
		}
	}
	return b.String()
}

// setAnnotation sets key in Chart.yaml's top-level annotations block to a
// literal block scalar holding value, replacing an earlier entry of that key
// and creating the block if there is none.
func setAnnotation(doc, key, value string) string {
	lines := strings.Split(strings.TrimRight(doc, "\n"), "\n")
	entry := []string{"  " + key + ": |"}
	for _, l := range strings.Split(strings.TrimRight(value, "\n"), "\n") {
		entry = append(entry, "    "+l)
	}
	start := -1
	for i, l := range lines {
		if l == "annotations:" {
			start = i
			break
		}
	}
	if start < 0 {
		return strings.Join(append(append(lines, "annotations:"), entry...), "\n") + "\n"
	}
	// The block ends at the next line that is not indented (a top-level key).
	end := start + 1
	for end < len(lines) && (lines[end] == "" || strings.HasPrefix(lines[end], " ") || strings.HasPrefix(lines[end], "#")) {
		end++
	}
	var block []string
	for i := start + 1; i < end; i++ {
		if strings.HasPrefix(lines[i], "  "+key+":") {
			// Skip the old entry and its more-indented continuation lines.
			for i+1 < end && (strings.HasPrefix(lines[i+1], "    ") || lines[i+1] == "") {
				i++
			}
			continue
		}
		block = append(block, lines[i])
	}
	out := append([]string{}, lines[:start+1]...)
	out = append(out, entry...)
	out = append(out, block...)
	out = append(out, lines[end:]...)
	return strings.Join(out, "\n") + "\n"
}
