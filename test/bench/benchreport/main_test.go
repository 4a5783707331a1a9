package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/benchmarks.golden.md")

// The page from fixed inputs: the memory table reads every memsample
// column from the right prefix (swapping idle_ and end_, or cg_peak and
// cg_usage, changes the golden page), and the commit and command appear.
func TestPageGolden(t *testing.T) {
	var b bytes.Buffer
	td := func(f string) string { return filepath.Join("testdata", f) }
	if err := run(&b, td("meta.env"), td("resolver.tsv"), td("webhook.tsv"), td("commands.txt"), ""); err != nil {
		t.Fatal(err)
	}
	golden := td("benchmarks.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./test/bench/benchreport -update writes it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("page differs from %s (go test -update rewrites it); got:\n%s", golden, b.String())
	}
}

func TestLoadNote(t *testing.T) {
	for _, tc := range []struct{ load, nproc, want string }{
		{"0.20 0.10 0.05", "2", "the machine was mostly idle apart from the benchmark"},
		{"1.20 0.10 0.05", "2", "other jobs ran beside the benchmark"},
		{"5.00 4.00 3.00", "2", "2.5 runnable tasks per CPU over the last minute: other jobs took CPU time during the run"},
		{"", "2", "unknown"},
		{"x 1 1", "2", "unknown"},
		{"1 1 1", "0", "unknown"},
	} {
		if got := loadNote(tc.load, tc.nproc); got != tc.want {
			t.Errorf("loadNote(%q, %q) = %q, want %q", tc.load, tc.nproc, got, tc.want)
		}
	}
}

func TestBadColumn(t *testing.T) {
	_, err := parseServerRow(map[string]string{"server": "x", "workload": "hit", "idle_cg_peak_kib": "lots"})
	if err == nil {
		t.Fatal("a row with unparsable columns parsed")
	}
}
