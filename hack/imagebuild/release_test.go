package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseRefuses: a bad version, a missing tool and a dirty tree stop
// the release before any work, each with a message saying what to do.
func TestReleaseRefuses(t *testing.T) {
	repo := t.TempDir()
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitRun("init", "-q")
	if err := os.WriteFile(filepath.Join(repo, "CHANGELOG.md"), []byte("## [Unreleased]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun("add", ".")
	gitRun("commit", "-qm", "one")
	// Tools that exist (the checks before any tool runs only look for them).
	tools := t.TempDir()
	for _, n := range []string{"cosign", "registry", "helm"} {
		if err := os.WriteFile(filepath.Join(tools, n), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dirty := func() {
		if err := os.WriteFile(filepath.Join(repo, "CHANGELOG.md"), []byte("## [Unreleased]\nedited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		cfg    releaseConfig
		before func()
		want   string
	}{
		{"not semver", releaseConfig{Version: "v0.2.0", Bin: tools}, nil, "is not a SemVer version"},
		{"build metadata", releaseConfig{Version: "0.2.0+x", Bin: tools}, nil, "build metadata"},
		{"missing tool", releaseConfig{Version: "0.2.0", Bin: t.TempDir()}, nil, "missing tools"},
		// Breaks if gitCommit ignores `git status` or release skips the check.
		{"dirty tree", releaseConfig{Version: "0.2.0", Bin: tools}, dirty, "tracked files are modified"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			tc.cfg.Root, tc.cfg.Dist, tc.cfg.Cache = repo, t.TempDir(), t.TempDir()
			_, err := release(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("release(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
			}
			if entries, _ := os.ReadDir(tc.cfg.Dist); len(entries) != 0 {
				t.Errorf("a refused release left %d entries in DIST", len(entries))
			}
		})
	}
}
