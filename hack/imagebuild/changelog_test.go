package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestPrevious(t *testing.T) {
	const a, b, c = "09abc8c58254b59ba51d32640af184fcb987a511", "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	section := func(v, commit string) string {
		return "## [" + v + "] - 2026-12-07\n\nCut from commit " + commit + ".\n\n### Added\n- x\n\n"
	}
	unreleased := "# Changelog\n\n## [Unreleased]\n\nTo be released.\n\n"
	for _, tc := range []struct {
		name, changelog, tree string
		want, wantErr         string
	}{
		{"the one release", unreleased + section("0.1.0", a), "0.2.0", "0.1.0 " + a, ""},
		{"newest below the tree", unreleased + section("0.2.0", b) + section("0.1.0", a), "0.3.0", "0.2.0 " + b, ""},
		{"the tree's own version recorded: the one before", section("0.2.0", b) + section("0.1.0", a), "0.2.0", "0.1.0 " + a, ""},
		{"file order does not matter", section("0.1.0", a) + section("0.10.0", c) + section("0.2.0", b), "0.11.0", "0.10.0 " + c, ""},
		{"patch releases", section("0.1.1", b) + section("0.1.0", a), "0.2.0", "0.1.1 " + b, ""},
		{"none older", unreleased + section("0.2.0", b), "0.2.0", "", "no release older than the tree's chart version 0.2.0"},
		{"no commit named", section("0.1.0", "abc"), "0.2.0", "", "release 0.1.0 names no commit"},
		{"short commit", "## [0.1.0] - 2026-12-07\n\nCut from commit 09abc8c.\n", "0.2.0", "", "names no commit"},
		{"two commits", "## [0.1.0] - 2026-12-07\n\nCut from commit " + a + ".\nCut from commit " + b + ".\n", "0.2.0", "", "names a second commit"},
		{"bad version", "## [0.1] - 2026-12-07\n\nCut from commit " + a + ".\n", "0.2.0", "", `version "0.1": want X.Y.Z`},
		{"leading zero", "## [0.01.0] - 2026-12-07\n\nCut from commit " + a + ".\n", "0.2.0", "", "decimal numbers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := parseVersion(tc.tree)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := parseChangelog(tc.changelog)
			var r recorded
			if err == nil {
				r, err = previous(rs, tree)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Version.String() + " " + r.Commit; got != tc.want {
				t.Errorf("previous = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTreeVersion(t *testing.T) {
	for _, tc := range []struct{ chart, want, wantErr string }{
		{"apiVersion: v2\nname: dnsguard\nversion: 0.2.0\nappVersion: \"0.2.0\"\n", "0.2.0", ""},
		{"version: \"1.2.3\"\n", "1.2.3", ""},
		{"appVersion: \"0.2.0\"\n", "", "no version line"},
		{"version: v0.2.0\n", "", "want X.Y.Z"},
		{"version: 0.2.0-rc.1\n", "", "without a pre-release part"},
	} {
		v, err := treeVersion(tc.chart)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.chart, err, tc.wantErr)
			}
			continue
		}
		if err != nil || v.String() != tc.want {
			t.Errorf("%q: %v, %v; want %s", tc.chart, v, err, tc.want)
		}
	}
}

// The repository's own CHANGELOG.md parses, and its first release is the
// commit issue 20 recorded.
func TestRepositoryChangelog(t *testing.T) {
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := parseChangelog(string(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Version.String() == "0.1.0" {
			if r.Commit != "09abc8c58254b59ba51d32640af184fcb987a511" {
				t.Errorf("0.1.0 cut from %s", r.Commit)
			}
			return
		}
	}
	t.Errorf("CHANGELOG.md records no 0.1.0 among %v", rs)
}

func TestSectionChanges(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []change
		err      string
	}{
		{"bullets with continuations", "## [Unreleased]\n\nprose\n\n### Added\n- a\n  b\n- c\n\n### Fixed\n- d\n",
			[]change{{"added", "a b"}, {"added", "c"}, {"fixed", "d"}}, ""},
		{"prose ends a list", "## [0.2.0] - x\n### Added\n- a\nUpgrade notes:\n- not a change\n", []change{{"added", "a"}}, ""},
		{"unknown heading", "## [Unreleased]\n### Misc\n- a\n", nil, "not a Keep a Changelog kind"},
		{"empty", "## [Unreleased]\nTo be released.\n", nil, "lists no change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sectionChanges(tc.in)
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

// The annotation is YAML whatever an entry holds: quotes, colons, a
// leading backtick or dash. Read back with a YAML parser in the release
// test (helm show chart); here the quoting itself.
func TestArtifactHubChangesQuoting(t *testing.T) {
	got := artifactHubChanges([]change{{"fixed", `"quoted": yes`}, {"added", "`make release` - signed"}})
	want := "- kind: fixed\n  description: \"\\\"quoted\\\": yes\"\n- kind: added\n  description: \"`make release` - signed\"\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// The repository's [Unreleased] section is what make release reads for the
// next release's artifacthub.io/changes.
func TestRepositoryUnreleasedChanges(t *testing.T) {
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	section, _, err := changelogSection(string(b), "99.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sectionChanges(section); err != nil {
		t.Fatal(err)
	}
}
