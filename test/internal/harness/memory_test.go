package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRollup(t *testing.T) {
	runParseCases(t, parseRollup, []parseCase[PSS]{
		{"rollup-resolver", PSS{Total: 6801, Anon: 1172, File: 5629}, ""},
		// Before Linux 5.9 there is no Pss_Anon: an error, not a zero.
		{"rollup-old-kernel", PSS{}, "1 of 3 keys"},
		{"rollup-bad-unit", PSS{}, "N kB"},
	})
}

func TestReadMemcgFiles(t *testing.T) {
	for _, tc := range []struct {
		dir     string
		want    Memcg
		wantErr string
	}{
		{"memcg-v1", Memcg{Usage: 8900, MaxUsage: 30720, RSS: 1184, Cache: 7004, Mapped: 2384, OOMKills: 2}, ""},
		// Kernels before 4.13 do not count OOM kills: an error, not "none".
		{"memcg-no-oomkill", Memcg{}, "memory.oom_control: 0 of 1 keys"},
		{"no-such-dir", Memcg{}, "no such file"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			got, err := ReadMemcg(filepath.Join("testdata", tc.dir))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// PSS of a child holding 48 MiB against an idle one: reading Pss_File for
// Pss_Anon, or the wrong unit, fails the bounds.
func TestReadPSSOfChild(t *testing.T) {
	idle := startChild(t, "idle", Options{})
	fat := startChild(t, "alloc", Options{})
	pi, err := ReadPSS(idle.PID())
	if err != nil {
		t.Fatal(err)
	}
	pf, err := ReadPSS(fat.PID())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle %+v KiB, alloc %+v KiB", pi, pf)
	const want = allocMiB << 10
	if pf.Anon < want || pf.Total < pf.Anon {
		t.Errorf("alloc child: %+v KiB, want Pss_Anon >= %d and Pss >= Pss_Anon", pf, want)
	}
	if pi.Anon >= want || pi.Total <= 0 {
		t.Errorf("idle child: %+v KiB, want 0 < Pss and Pss_Anon < %d", pi, want)
	}
}

// A real cgroup v1 memory controller (root only): the child's 48 MiB are
// charged to the cgroup it moves into. Reading memory.stat's cache for rss
// fails the RSS bound.
func TestReadMemcgOfChild(t *testing.T) {
	root := "/sys/fs/cgroup/memory"
	if os.Getuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	if _, err := os.Stat(filepath.Join(root, "memory.usage_in_bytes")); err != nil {
		t.Skipf("no cgroup v1 memory controller: %v", err)
	}
	dir := filepath.Join(root, "dnsguard-harness-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		// rmdir fails while the exited child's pages are being uncharged.
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", dir)
	})
	fat := startChild(t, "alloc", Options{Env: []string{"HARNESS_MEMCG=" + dir}})
	defer func() { _ = fat.Stop(5 * time.Second) }()
	m, err := ReadMemcg(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v KiB", m)
	const want = allocMiB << 10
	if m.RSS < want || m.Usage < m.RSS || m.MaxUsage < m.Usage || m.OOMKills != 0 {
		t.Errorf("cgroup of the alloc child: %+v KiB, want rss >= %d <= usage <= max usage, no OOM kill", m, want)
	}
}
