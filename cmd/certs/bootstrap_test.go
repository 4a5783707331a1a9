package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitList(t *testing.T) {
	got := splitList(" 127.0.0.1, localhost,,::1 ")
	if want := []string{"127.0.0.1", "localhost", "::1"}; !slices.Equal(got, want) {
		t.Errorf("splitList = %q, want %q", got, want)
	}
	if got := splitList(""); len(got) != 0 {
		t.Errorf("splitList(\"\") = %q, want empty", got)
	}
}

// TestBootstrapFlagErrors covers the failures that must happen before any
// API call, each with a message naming the problem.
func TestBootstrapFlagErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	badCfg := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(badCfg, []byte("this: [is not a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--namespace=ns"}, "--secret-name is required"},
		{[]string{"--secret-name=s", "--namespace=ns", "--kubeconfig=" + missing}, "no-such-kubeconfig"},
		{[]string{"--secret-name=s", "--namespace=ns", "--kubeconfig=" + badCfg}, "load kubeconfig"},
		{[]string{"--secret-name=s", "--log-level=loud"}, "--log-level"},
		{[]string{"--secret-name=s", "stray"}, "unexpected arguments"},
	} {
		err := runBootstrap(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("runBootstrap(%q) = %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}
