package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// semver is SemVer 2.0.0's grammar (semver.org), without a leading "v":
// the chart's version field and the image tags carry it as is.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// checkVersion refuses what is not SemVer; build metadata ("+...") is
// refused too, since an image tag cannot hold a "+".
func checkVersion(v string) error {
	if !semver.MatchString(v) {
		return fmt.Errorf("VERSION=%q is not a SemVer version like 0.2.0 or 1.0.0-rc.1 (no leading v)", v)
	}
	if strings.Contains(v, "+") {
		return fmt.Errorf("VERSION=%q: build metadata (+...) cannot be an image tag", v)
	}
	return nil
}

// Commit is the state of the checkout a release is cut from.
type Commit struct {
	Hash  string // full hash of HEAD
	Dirty bool   // tracked files differ from HEAD
	Time  int64  // committer time: SOURCE_DATE_EPOCH of every file and image
}

// String names the commit as the notes do: the hash, "+dirty" when the tree
// is not what the commit holds.
func (c Commit) String() string {
	if c.Dirty {
		return c.Hash + "+dirty"
	}
	return c.Hash
}

// gitCommit reads HEAD, its time and whether tracked files are modified
// (untracked files do not reach the binaries: go build ignores files git
// does not know only if they are outside the packages; the release refuses
// a dirty tree, which covers edits, and go build -buildvcs records the same
// state in the binaries).
func gitCommit(root string) (Commit, error) {
	out, err := git(root, "log", "-1", "--format=%H %ct")
	if err != nil {
		return Commit{}, err
	}
	hash, ts, ok := strings.Cut(strings.TrimSpace(out), " ")
	if !ok {
		return Commit{}, fmt.Errorf("git log: unexpected output %q", out)
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Commit{}, fmt.Errorf("git log: commit time %q: %w", ts, err)
	}
	status, err := git(root, "status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return Commit{}, err
	}
	return Commit{Hash: hash, Time: t, Dirty: strings.TrimSpace(status) != ""}, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
