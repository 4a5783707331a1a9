package main

import (
	"fmt"
	"strings"
)

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

// releaseNotes is notes.md: the changelog section, then what the release
// was cut from and how.
func releaseNotes(version, section string, c Commit, goVersion, command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# dnsguard %s\n\n", version)
	b.WriteString(section)
	fmt.Fprintf(&b, "\n---\n\nCut from commit %s with `%s` (%s).\n", c, command, goVersion)
	if c.Dirty {
		b.WriteString("The tree had modified tracked files (ALLOW_DIRTY=1): these artifacts are not reproducible from the commit alone.\n")
	}
	return b.String()
}
