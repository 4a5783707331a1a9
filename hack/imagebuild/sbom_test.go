package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPurl(t *testing.T) {
	for _, tc := range []struct{ path, version, want string }{
		{"github.com/miekg/dns", "v1.1.68", "pkg:golang/github.com/miekg/dns@v1.1.68"},
		// The namespace is lower-cased (purl spec, type golang); the name is not.
		{"github.com/BurntSushi/TOML", "v1.0.0", "pkg:golang/github.com/burntsushi/TOML@v1.0.0"},
		{"k8s.io/client-go", "v0.35.0", "pkg:golang/k8s.io/client-go@v0.35.0"},
		{"stdlib", "go1.26.8", "pkg:golang/stdlib@go1.26.8"},
		{"example.com/m", "v0.0.0-20261207083000-9f29a9fb5b8c+dirty", "pkg:golang/example.com/m@v0.0.0-20261207083000-9f29a9fb5b8c+dirty"},
	} {
		if got := purl(tc.path, tc.version); got != tc.want {
			t.Errorf("purl(%s, %s) = %s, want %s", tc.path, tc.version, got, tc.want)
		}
	}
}

func TestModulePackage(t *testing.T) {
	tests := []struct {
		name    string
		mod     debug.Module
		purl    string
		sha     string // hex of the h1: hash (base64-decoded)
		wantErr bool
	}{
		{name: "dependency with go.sum hash",
			mod:  debug.Module{Path: "golang.org/x/sys", Version: "v0.47.0", Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
			purl: "pkg:golang/golang.org/x/sys@v0.47.0", sha: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{name: "replaced: the replacement is what was linked",
			mod:  debug.Module{Path: "a.example/m", Version: "v1.0.0", Replace: &debug.Module{Path: "b.example/m", Version: "v1.0.1"}},
			purl: "pkg:golang/b.example/m@v1.0.1"},
		{name: "main module without hash", mod: debug.Module{Path: "github.com/dnsguard/dnsguard", Version: "(devel)"},
			purl: "pkg:golang/github.com/dnsguard/dnsguard@%28devel%29"},
		{name: "bad hash", mod: debug.Module{Path: "x.example/m", Version: "v1.0.0", Sum: "h1:notbase64!"}, wantErr: true},
		{name: "no version", mod: debug.Module{Path: "x.example/m"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := modulePackage(&tc.mod)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("modulePackage(%+v) = %+v, want an error", tc.mod, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.ExternalRefs) != 1 || p.ExternalRefs[0].Locator != tc.purl {
				t.Errorf("purl %+v, want %s", p.ExternalRefs, tc.purl)
			}
			if tc.sha != "" && (len(p.Checksums) != 1 || p.Checksums[0].Algorithm != "SHA256" || p.Checksums[0].Value != tc.sha) {
				t.Errorf("checksums %+v, want SHA256 %s", p.Checksums, tc.sha)
			}
			if tc.sha == "" && len(p.Checksums) != 0 {
				t.Errorf("checksums %+v for a module without go.sum hash", p.Checksums)
			}
		})
	}
}

// TestSBOMOfThisTest reads the build information of the running test
// binary (a real Go binary with dependencies) and checks the document
// lists each of its modules once, related to every binary that holds it.
func TestSBOMOfThisTest(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	var bins []SBOMBinary
	for _, pl := range []string{"linux/amd64", "linux/arm64"} {
		b, err := ReadSBOMBinary(exe, "/webhook", pl, data)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, b)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	created := time.Unix(1765000000, 0)
	raw, err := SBOM("ghcr.io/dnsguard/webhook:0.2.0", digest, "abc123", bins, created)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := SBOM("ghcr.io/dnsguard/webhook:0.2.0", digest, "abc123", bins, created)
	if string(raw) != string(again) {
		t.Error("two SBOMs of the same input differ")
	}
	var doc spdxDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2025-12-06T05:46:40Z" || !strings.HasSuffix(doc.DocumentNamespace, "/webhook/0.2.0/"+digest) {
		t.Errorf("document header %+v", doc)
	}
	if doc.Packages[0].SourceInfo != "built from "+source+" commit abc123" {
		t.Errorf("image package sourceInfo %q does not name the commit", doc.Packages[0].SourceInfo)
	}
	ids := map[string]int{}
	var libs []string
	for _, p := range doc.Packages {
		ids[p.SPDXID]++
		if p.PrimaryPurpose == "LIBRARY" {
			libs = append(libs, p.Name+"@"+p.VersionInfo)
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("SPDXID %s used by %d packages", id, n)
		}
	}
	bi := bins[0].Info
	want := []string{"stdlib@" + bi.GoVersion}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		want = append(want, d.Path+"@"+d.Version)
	}
	if len(bi.Deps) == 0 {
		t.Fatal("the test binary has no dependencies in its build information")
	}
	// A test binary's main module is "(devel)" to Go, as the release's
	// binaries are (no VCS stamp): the SBOM names the release's version.
	// Breaks if SBOM copies b.Info.Main.Version.
	if bi.Main.Version == "(devel)" {
		want = append(want, bi.Main.Path+"@v0.2.0")
	}
	for _, w := range want {
		if !slices.Contains(libs, w) {
			t.Errorf("SBOM lacks module %s", w)
		}
	}
	// Two binaries, each containing the image's every module.
	contains := 0
	for _, r := range doc.Relationships {
		if r.Type == "CONTAINS" && strings.HasPrefix(r.Element, "SPDXRef-Binary-") {
			contains++
		}
	}
	if wantN := 2 * (len(bi.Deps) + 2); contains != wantN {
		t.Errorf("%d binary CONTAINS relationships, want %d", contains, wantN)
	}
}

func TestSBOMRejects(t *testing.T) {
	if _, err := SBOM("ghcr.io/dnsguard/webhook:0.2.0", "sha256:00", "abc", nil, time.Unix(0, 0)); err == nil {
		t.Error("SBOM of no binaries gave no error")
	}
	if _, err := SBOM("ghcr.io/dnsguard/webhook", "sha256:00", "abc", []SBOMBinary{{Path: "/x", Info: &debug.BuildInfo{}}}, time.Unix(0, 0)); err == nil {
		t.Error("SBOM of a reference without tag gave no error")
	}
	if _, err := ReadSBOMBinary(filepath.Join(t.TempDir(), "none"), "/x", "linux/amd64", nil); err == nil {
		t.Error("ReadSBOMBinary of a missing file gave no error")
	}
}
