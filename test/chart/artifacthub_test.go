//go:build chart

package chart

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// change is one entry of the artifacthub.io/changes annotation.
type change struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
}

// changelogKinds maps Keep a Changelog headings to Artifact Hub kinds.
var changelogKinds = map[string]string{
	"Added": "added", "Changed": "changed", "Deprecated": "deprecated",
	"Removed": "removed", "Fixed": "fixed", "Security": "security",
}

// unreleasedChanges reads the [Unreleased] section of CHANGELOG.md: every
// bullet under a known ### heading, its continuation lines joined.
func unreleasedChanges(changelog string) ([]change, error) {
	start := strings.Index(changelog, "\n## [Unreleased]")
	if start < 0 {
		return nil, fmt.Errorf("CHANGELOG.md has no ## [Unreleased] section")
	}
	section := changelog[start+1:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	var out []change
	kind := ""
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			k, ok := changelogKinds[strings.TrimSpace(line[4:])]
			if !ok {
				return nil, fmt.Errorf("CHANGELOG.md [Unreleased]: heading %q is not a Keep a Changelog kind", line)
			}
			kind = k
		case strings.HasPrefix(line, "- ") && kind != "":
			out = append(out, change{kind, strings.TrimSpace(line[2:])})
		case strings.HasPrefix(line, "  ") && len(out) > 0 && kind != "" && strings.TrimSpace(line) != "":
			out[len(out)-1].Description += " " + strings.TrimSpace(line)
		case strings.TrimSpace(line) == "":
		default:
			kind = "" // prose between sections ends a list
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CHANGELOG.md [Unreleased] lists no change")
	}
	return out, nil
}

var changesBlock = regexp.MustCompile(`(?s)(  # BEGIN artifacthub.io/changes \(generated\)\n).*?(  # END artifacthub.io/changes\n)`)

// TestArtifactHubChanges: Chart.yaml's artifacthub.io/changes is exactly
// CHANGELOG.md's [Unreleased] section, and the other Artifact Hub metadata
// parses. CHART_UPDATE_CHANGES=1 rewrites the annotation instead.
// Negative control: adding a bullet to CHANGELOG.md's [Unreleased] without
// rewriting Chart.yaml fails with the missing entry.
func TestArtifactHubChanges(t *testing.T) {
	cl, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := unreleasedChanges(string(cl))
	if err != nil {
		t.Fatal(err)
	}
	chartPath := chartRel + "/Chart.yaml"
	raw, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CHART_UPDATE_CHANGES") == "1" {
		b, err := yaml.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		block := "  artifacthub.io/changes: |\n" + indent(string(b), "    ")
		if !changesBlock.Match(raw) {
			t.Fatalf("%s has no generated artifacthub.io/changes block", chartPath)
		}
		raw = changesBlock.ReplaceAll(raw, []byte("${1}"+strings.ReplaceAll(block, "$", "$$")+"${2}"))
		if err := os.WriteFile(chartPath, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote artifacthub.io/changes in %s: %d entries", chartPath, len(want))
	}
	var chart struct {
		Icon        string            `json:"icon"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	var got []change
	if err := yaml.UnmarshalStrict([]byte(chart.Annotations["artifacthub.io/changes"]), &got); err != nil {
		t.Fatalf("artifacthub.io/changes: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("artifacthub.io/changes differs from CHANGELOG.md [Unreleased]; rewrite it with\n"+
			"  CHART_UPDATE_CHANGES=1 go test -tags chart -run TestArtifactHubChanges ./test/chart\ngot  %v\nwant %v", got, want)
	}
	// The license annotation names the LICENSE file's license (negative
	// control: an annotation of MIT, or none, fails here).
	license, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatalf("LICENSE: %v", err)
	}
	if got := chart.Annotations["artifacthub.io/license"]; got != "Apache-2.0" ||
		!bytes.Contains(license, []byte("Apache License")) || !bytes.Contains(license, []byte("Version 2.0, January 2004")) {
		t.Errorf("artifacthub.io/license %q: want Apache-2.0, the license of LICENSE", got)
	}
	var links []struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	if err := yaml.UnmarshalStrict([]byte(chart.Annotations["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
		t.Errorf("artifacthub.io/links %q: %v", chart.Annotations["artifacthub.io/links"], err)
	}
	for _, l := range links {
		if l.Name == "" || !strings.HasPrefix(l.URL, "https://") {
			t.Errorf("link %+v: want a name and an https URL", l)
		}
	}
	// Artifact Hub takes no data: URL; the icon is a file of this
	// repository, served from its main branch.
	const prefix = "https://raw.githubusercontent.com/dnsguard/dnsguard/main/"
	if !strings.HasPrefix(chart.Icon, prefix) {
		t.Errorf("icon %q: want a file of the repository under %s", chart.Icon, prefix)
	} else if _, err := os.Stat("../../" + strings.TrimPrefix(chart.Icon, prefix)); err != nil {
		t.Errorf("icon %q: %v", chart.Icon, err)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestUnreleasedChangesParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []change
		err      string
	}{
		{"bullets with continuations", "# C\n\n## [Unreleased]\n\nprose\n\n### Added\n- a\n  b\n- c\n\n### Fixed\n- d\n\n## [0.1.0] - x\n### Added\n- old\n",
			[]change{{"added", "a b"}, {"added", "c"}, {"fixed", "d"}}, ""},
		{"no section", "# C\n## [0.1.0]\n### Added\n- a\n", nil, "no ## [Unreleased]"},
		{"unknown heading", "# C\n## [Unreleased]\n### Misc\n- a\n", nil, "not a Keep a Changelog kind"},
		{"empty", "# C\n## [Unreleased]\nTo be released.\n## [0.1.0]\n### Added\n- a\n", nil, "lists no change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unreleasedChanges(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
