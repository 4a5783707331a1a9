package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// SPDX 2.3 JSON (https://spdx.github.io/spdx-spec/v2.3/), only the fields
// written here.
type spdxDoc struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreation       `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string         `json:"SPDXID"`
	Name             string         `json:"name"`
	VersionInfo      string         `json:"versionInfo,omitempty"`
	DownloadLocation string         `json:"downloadLocation"`
	FilesAnalyzed    bool           `json:"filesAnalyzed"`
	SourceInfo       string         `json:"sourceInfo,omitempty"`
	PrimaryPurpose   string         `json:"primaryPackagePurpose,omitempty"`
	Checksums        []spdxChecksum `json:"checksums,omitempty"`
	Comment          string         `json:"comment,omitempty"`
	ExternalRefs     []spdxRef      `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// SBOMBinary is one executable of an image, as the SBOM lists it.
type SBOMBinary struct {
	Path     string // in the image, e.g. /webhook
	Platform string // linux/arm64
	SHA256   string // hex digest of the file
	Info     *debug.BuildInfo
}

// ReadSBOMBinary reads the build information Go embeds in every binary
// (what `go version -m` prints).
func ReadSBOMBinary(file, path, platform string, data []byte) (SBOMBinary, error) {
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		return SBOMBinary{}, fmt.Errorf("build information of %s: %w", file, err)
	}
	sum := sha256.Sum256(data)
	return SBOMBinary{Path: path, Platform: platform, SHA256: hex.EncodeToString(sum[:]), Info: bi}, nil
}

// SBOM is the SPDX document of one image index: the image, each binary of
// each platform, and every Go module linked into them (the main module, the
// standard library, each dependency with its version and go.sum checksum),
// as packages with pkg:golang purls. Everything in it comes from the
// arguments, so the same images give the same bytes.
func SBOM(ref, digest, revision string, bins []SBOMBinary, created time.Time) ([]byte, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("sbom %s: no binaries", ref)
	}
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok || strings.Contains(tag, "/") {
		return nil, fmt.Errorf("sbom: reference %q has no tag", ref)
	}
	doc := spdxDoc{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              ref,
		DocumentNamespace: source + "/spdx/" + repo[strings.LastIndex(repo, "/")+1:] + "/" + tag + "/" + digest,
		CreationInfo: spdxCreation{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: dnsguard-imagebuild", "Organization: dnsguard"},
		},
	}
	imageID := "SPDXRef-Image"
	doc.Packages = append(doc.Packages, spdxPackage{
		SPDXID: imageID, Name: repo, VersionInfo: tag, DownloadLocation: "NOASSERTION",
		PrimaryPurpose: "CONTAINER", SourceInfo: "built from " + source + " commit " + revision,
		Checksums: []spdxChecksum{{Algorithm: "SHA256", Value: strings.TrimPrefix(digest, "sha256:")}},
		ExternalRefs: []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl",
			Locator: "pkg:oci/" + repo[strings.LastIndex(repo, "/")+1:] + "@" + url.PathEscape(digest) + "?repository_url=" + url.QueryEscape(repo) + "&tag=" + tag}},
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})

	modules := map[string]spdxPackage{} // by SPDXID: shared by every binary
	for _, b := range bins {
		if b.Info == nil {
			return nil, fmt.Errorf("sbom %s: %s (%s) has no build information", ref, b.Path, b.Platform)
		}
		// The release builds without VCS stamping (a git worktree of the
		// release's commit must give the same digests), so Go records the
		// main module as "(devel)"; the release's own version names it for
		// scanners that match pkg:golang/github.com/dnsguard/dnsguard@vX.Y.Z.
		main := b.Info.Main
		if main.Version == "(devel)" || main.Version == "" {
			main.Version = "v" + tag
		}
		binID := spdxID("Binary", b.Platform+b.Path)
		doc.Packages = append(doc.Packages, spdxPackage{
			SPDXID: binID, Name: b.Path[1:], VersionInfo: main.Version, DownloadLocation: "NOASSERTION",
			PrimaryPurpose: "APPLICATION",
			Checksums:      []spdxChecksum{{Algorithm: "SHA256", Value: b.SHA256}},
			Comment:        fmt.Sprintf("%s in the %s image, built by %s from %s", b.Path, b.Platform, b.Info.GoVersion, b.Info.Path),
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", binID})
		mods := append([]*debug.Module{&main, {Path: "stdlib", Version: b.Info.GoVersion}}, b.Info.Deps...)
		for _, m := range mods {
			p, err := modulePackage(m)
			if err != nil {
				return nil, fmt.Errorf("sbom %s: %s (%s): %w", ref, b.Path, b.Platform, err)
			}
			modules[p.SPDXID] = p
			doc.Relationships = append(doc.Relationships, spdxRelationship{binID, "CONTAINS", p.SPDXID})
		}
	}
	ids := make([]string, 0, len(modules))
	for id := range modules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		doc.Packages = append(doc.Packages, modules[id])
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sbom %s: %w", ref, err)
	}
	return append(out, '\n'), nil
}

// modulePackage is one Go module as an SPDX package. A replaced module is
// listed as what was linked (the replacement). go.sum's h1: checksum is a
// SHA-256 (of the module's file tree, not of one file), given in hex as SPDX
// wants it.
func modulePackage(m *debug.Module) (spdxPackage, error) {
	if m.Replace != nil {
		m = m.Replace
	}
	if m.Path == "" || m.Version == "" {
		return spdxPackage{}, fmt.Errorf("module %q has no path or version", m.Path+"@"+m.Version)
	}
	p := spdxPackage{
		SPDXID: spdxID("Module", m.Path+"@"+m.Version), Name: m.Path, VersionInfo: m.Version,
		DownloadLocation: "NOASSERTION", PrimaryPurpose: "LIBRARY",
		ExternalRefs: []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: purl(m.Path, m.Version)}},
	}
	if h, ok := strings.CutPrefix(m.Sum, "h1:"); ok {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(raw) != sha256.Size {
			return spdxPackage{}, fmt.Errorf("module %s@%s: checksum %q is not a go.sum h1: hash", m.Path, m.Version, m.Sum)
		}
		p.Checksums = []spdxChecksum{{Algorithm: "SHA256", Value: hex.EncodeToString(raw)}}
		p.Comment = "checksum: go.sum " + m.Sum
	}
	return p, nil
}

// purl is the package URL of a Go module (github.com/package-url/purl-spec,
// type golang): the path's elements escaped, the namespace lower-case as
// the spec asks for golang.
func purl(path, version string) string {
	if path == "stdlib" {
		return "pkg:golang/stdlib@" + url.PathEscape(version)
	}
	parts := strings.Split(path, "/")
	for i := range parts {
		if i < len(parts)-1 {
			parts[i] = strings.ToLower(parts[i])
		}
		parts[i] = url.PathEscape(parts[i])
	}
	return "pkg:golang/" + strings.Join(parts, "/") + "@" + url.PathEscape(version)
}

var notIDChar = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// spdxID makes a valid, unique SPDX identifier: the readable part loses
// the characters SPDX forbids, and a hash of the whole key keeps "a/b" and
// "a-b" apart.
func spdxID(kind, key string) string {
	sum := sha256.Sum256([]byte(key))
	return "SPDXRef-" + kind + "-" + strings.Trim(notIDChar.ReplaceAllString(key, "-"), "-") + "-" + hex.EncodeToString(sum[:4])
}
