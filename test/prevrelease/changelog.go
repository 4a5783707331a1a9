package main

import (
	"bufio"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// release is one entry of CHANGELOG.md: a version and the commit it was cut
// from (a tag may not reach every clone; the commit does).
type release struct {
	Version version
	Date    string
	Commit  string
}

// version is a release version, X.Y.Z (the chart follows SemVer; releases
// carry no pre-release part).
type version [3]int

func parseVersion(s string) (version, error) {
	var v version
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q: want X.Y.Z", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return v, fmt.Errorf("version %q: want X.Y.Z with decimal numbers", s)
		}
		v[i] = n
	}
	return v, nil
}

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

func (v version) less(w version) bool {
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
func parseChangelog(text string) ([]release, error) {
	var out []release
	var cur *release
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
			out = append(out, release{Version: v, Date: m[2]})
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
func previous(releases []release, tree version) (release, error) {
	var best *release
	for i, r := range releases {
		if r.Version.less(tree) && (best == nil || best.Version.less(r.Version)) {
			best = &releases[i]
		}
	}
	if best == nil {
		return release{}, fmt.Errorf("CHANGELOG.md records no release older than the tree's chart version %s", tree)
	}
	return *best, nil
}

var chartVersion = regexp.MustCompile(`(?m)^version:\s*"?([^"\s]+)"?\s*$`)

// treeVersion is the chart version of Chart.yaml's text.
func treeVersion(chartYAML string) (version, error) {
	m := chartVersion.FindStringSubmatch(chartYAML)
	if m == nil {
		return version{}, errors.New("no version line in the chart metadata")
	}
	return parseVersion(m[1])
}
