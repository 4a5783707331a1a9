package main

import (
	"fmt"
	"strings"
)

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
