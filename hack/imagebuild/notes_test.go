package main

import (
	"strings"
	"testing"
)

func TestChangelogSection(t *testing.T) {
	const changelog = `# Changelog

## [Unreleased]

### Added
- next thing

## [0.2.0] - 2026-12-08

Cut from commit abc.

### Fixed
- a bug

## [0.1.0] - 2026-12-07

- first
`
	tests := []struct {
		version, heading, has, hasNot string
		err                           bool
	}{
		{"0.2.0", "## [0.2.0]", "- a bug", "first", false},
		{"0.1.0", "## [0.1.0]", "- first", "a bug", false},
		// No section of its own: the unreleased changes are the notes.
		{"0.3.0", "## [Unreleased]", "- next thing", "a bug", false},
		// "0.2" must not match "0.2.0"'s heading.
		{"0.2", "## [Unreleased]", "- next thing", "a bug", false},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			got, h, err := changelogSection(changelog, tc.version)
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.heading || !strings.Contains(got, tc.has) || strings.Contains(got, tc.hasNot) {
				t.Errorf("section for %s = %q (heading %q), want heading %q with %q and without %q", tc.version, got, h, tc.heading, tc.has, tc.hasNot)
			}
		})
	}
	if _, _, err := changelogSection("# Changelog\n", "1.0.0"); err == nil {
		t.Error("a changelog without the section or [Unreleased] gave no error")
	}
}

func TestReleaseNotesNamesCommit(t *testing.T) {
	for _, c := range []Commit{{Hash: "abc"}, {Hash: "abc", Dirty: true}} {
		n := releaseNotes("0.2.0", "## [Unreleased]\n", c, "go1.26.8", "make release VERSION=0.2.0")
		if !strings.Contains(n, "commit "+c.String()+" ") || !strings.Contains(n, "`make release VERSION=0.2.0`") {
			t.Errorf("notes for %v do not name the commit and command:\n%s", c, n)
		}
		if strings.Contains(n, "ALLOW_DIRTY") != c.Dirty {
			t.Errorf("notes for %v: dirty warning present = %v", c, !c.Dirty)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"0.2.0", true}, {"1.0.0-rc.1", true}, {"10.20.30", true},
		{"v0.2.0", false}, {"0.2", false}, {"01.2.3", false}, {"0.2.0+build", false}, {"", false}, {"0.2.0 ", false},
	} {
		if err := checkVersion(tc.v); (err == nil) != tc.ok {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", tc.v, err, tc.ok)
		}
	}
}
