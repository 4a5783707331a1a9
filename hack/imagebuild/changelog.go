package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// CHANGELOG.md (Keep a Changelog) is read here and only here: the release
// notes take a version's section (changelogSection), the upgrade test's
// previous release is the newest recorded one below the tree's chart
// version (parseChangelog, previous).

// changelogSection returns the CHANGELOG.md section "## [version]" (from
// its heading to the next "## " heading), else "## [Unreleased]", and which
// one it took.
func changelogSection(changelog, version string) (section, heading string, err error) {
	for _, h := range []string{"## [" + version + "]", "## [Unreleased]"} {
		lines := strings.Split(changelog, "\n")
		for i, l := range lines {
			if l != h && !strings.HasPrefix(l, h+" ") {
				continue
			}
			end := i + 1
			for end < len(lines) && !strings.HasPrefix(lines[end], "## ") {
				end++
			}
			// Link reference definitions at the end of the file belong to no section.
			body := strings.TrimSpace(strings.Join(lines[i:end], "\n"))
			return body + "\n", h, nil
		}
	}
	return "", "", fmt.Errorf("CHANGELOG.md has neither a %q nor a %q section", "## ["+version+"]", "## [Unreleased]")
}

// change is one entry of Artifact Hub's artifacthub.io/changes annotation.
type change struct {
	Kind, Description string
}

// changelogKinds maps Keep a Changelog headings to Artifact Hub kinds.
var changelogKinds = map[string]string{
	"Added": "added", "Changed": "changed", "Deprecated": "deprecated",
	"Removed": "removed", "Fixed": "fixed", "Security": "security",
}

// sectionChanges reads a changelogSection: every bullet under a ### kind
// heading, its continuation lines joined. A heading of another kind is an
// error (Artifact Hub knows only these), and so is a section listing
// nothing: a release's notes say what changed.
func sectionChanges(section string) ([]change, error) {
	var out []change
	kind := ""
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			k, ok := changelogKinds[strings.TrimSpace(line[4:])]
			if !ok {
				return nil, fmt.Errorf("CHANGELOG.md: heading %q is not a Keep a Changelog kind (Added, Changed, Deprecated, Removed, Fixed, Security)", line)
			}
			kind = k
		case strings.HasPrefix(line, "- ") && kind != "":
			out = append(out, change{kind, strings.TrimSpace(line[2:])})
		case strings.HasPrefix(line, "  ") && len(out) > 0 && kind != "" && strings.TrimSpace(line) != "":
			out[len(out)-1].Description += " " + strings.TrimSpace(line)
		case strings.TrimSpace(line) == "":
		default:
			kind = "" // prose between lists ends a list
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CHANGELOG.md: the release's section lists no change under a ### Added/Changed/... heading")
	}
	return out, nil
}

// artifactHubChanges is the annotation's YAML: a list of kind and
// description, each description a JSON string (a valid YAML double-quoted
// scalar, whatever backticks, colons or quotes the entry holds).
func artifactHubChanges(changes []change) string {
	var b strings.Builder
	for _, c := range changes {
		d, _ := json.Marshal(c.Description)
		fmt.Fprintf(&b, "- kind: %s\n  description: %s\n", c.Kind, d)
	}
	return b.String()
}

// recorded is one release CHANGELOG.md records: a version and the commit it
// was cut from (a tag may not reach every clone; the commit does).
type recorded struct {
	Version relVersion
	Date    string
	Commit  string
}

// relVersion is a released version, X.Y.Z: SemVer (the semver grammar
// checkVersion uses) without pre-release or build parts, which a recorded
// release never has.
type relVersion [3]int

func parseVersion(s string) (relVersion, error) {
	var v relVersion
	m := semver.FindStringSubmatch(s)
	if m == nil || m[5] != "" {
		return v, fmt.Errorf("version %q: want X.Y.Z with decimal numbers (SemVer, no leading v)", s)
	}
	if m[4] != "" {
		return v, fmt.Errorf("version %q: a release is X.Y.Z, without a pre-release part", s)
	}
	for i := range v {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return v, fmt.Errorf("version %q: %w", s, err)
		}
		v[i] = n
	}
	return v, nil
}

func (v relVersion) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

func (v relVersion) less(w relVersion) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

var (
	// "## [0.1.0] - 2026-12-07" (Keep a Changelog); "## [Unreleased]" has
	// no date and is skipped.
	releaseHeading = regexp.MustCompile(`^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})\s*$`)
	cutFrom        = regexp.MustCompile(`^Cut from commit ([0-9a-f]{40})\.`)
)

// parseChangelog returns the releases CHANGELOG.md records, in file order.
// A release section without its "Cut from commit <40 hex>." line is an
// error: the upgrade test could not build it.
func parseChangelog(text string) ([]recorded, error) {
	var out []recorded
	var cur *recorded
	line := 0
	finish := func() error {
		if cur != nil && cur.Commit == "" {
			return fmt.Errorf("CHANGELOG.md: release %s names no commit (want a line \"Cut from commit <40 hex digits>.\")", cur.Version)
		}
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line++
		l := sc.Text()
		if strings.HasPrefix(l, "## ") {
			if err := finish(); err != nil {
				return nil, err
			}
			cur = nil
			m := releaseHeading.FindStringSubmatch(l)
			if m == nil {
				continue // [Unreleased], or a heading of another kind
			}
			v, err := parseVersion(m[1])
			if err != nil {
				return nil, fmt.Errorf("CHANGELOG.md line %d: %w", line, err)
			}
			out = append(out, recorded{Version: v, Date: m[2]})
			cur = &out[len(out)-1]
			continue
		}
		if m := cutFrom.FindStringSubmatch(l); m != nil && cur != nil {
			if cur.Commit != "" {
				return nil, fmt.Errorf("CHANGELOG.md line %d: release %s names a second commit", line, cur.Version)
			}
			cur.Commit = m[1]
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// previous is the newest recorded release older than tree.
func previous(releases []recorded, tree relVersion) (recorded, error) {
	var best *recorded
	for i, r := range releases {
		if r.Version.less(tree) && (best == nil || best.Version.less(r.Version)) {
			best = &releases[i]
		}
	}
	if best == nil {
		return recorded{}, fmt.Errorf("CHANGELOG.md records no release older than the tree's chart version %s", tree)
	}
	return *best, nil
}

var chartVersion = regexp.MustCompile(`(?m)^version:\s*"?([^"\s]+)"?\s*$`)

// treeVersion is the chart version of Chart.yaml's text.
func treeVersion(chartYAML string) (relVersion, error) {
	m := chartVersion.FindStringSubmatch(chartYAML)
	if m == nil {
		return relVersion{}, errors.New("no version line in the chart metadata")
	}
	return parseVersion(m[1])
}
