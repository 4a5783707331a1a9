package main

import "testing"

func TestSetYAML(t *testing.T) {
	const values = `# top comment
image:
  # repository comment
  repository: ghcr.io/dnsguard/webhook
  digest: ""
sidecar:
  enabled: true
  image:
    repository: ghcr.io/dnsguard/resolver
    digest: ""   # trailing comment goes
  other:
    digest: ""
digest: top
`
	tests := []struct {
		name  string
		path  []string
		value string
		want  string // the changed line
		line  int
		err   bool
	}{
		{"top-level block", []string{"image", "digest"}, "sha256:aa", `  digest: "sha256:aa"`, 4, false},
		{"nested, not the sibling block", []string{"sidecar", "image", "digest"}, "sha256:bb", `    digest: "sha256:bb"`, 9, false},
		{"sibling block", []string{"sidecar", "other", "digest"}, "x", `    digest: "x"`, 11, false},
		{"top-level scalar after blocks", []string{"digest"}, "y", `digest: "y"`, 12, false},
		{"missing key", []string{"nodeCache", "image", "digest"}, "z", "", 0, true},
		// A key of an unrelated block with the same name must not match.
		{"wrong parent", []string{"image", "enabled"}, "z", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := setYAML(values, tc.path, tc.value)
			if tc.err {
				if err == nil {
					t.Fatalf("setYAML(%v) = nil error, want one", tc.path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := splitLines(got)
			if lines[tc.line] != tc.want {
				t.Errorf("line %d = %q, want %q", tc.line, lines[tc.line], tc.want)
			}
			// Every other line is untouched.
			orig := splitLines(values)
			for i := range orig {
				if i != tc.line && orig[i] != lines[i] {
					t.Errorf("line %d changed: %q -> %q", i, orig[i], lines[i])
				}
			}
		})
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
