package resolver

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFileKiB is this process's resident file-backed memory (its own
// executable's pages, mostly).
func rssFileKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("parse %q: %v", l, err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseStartupPages(t *testing.T) {
	before := rssFileKiB(t)
	n, err := ReleaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	t.Logf("advised %d KiB; RssFile %d -> %d KiB", n>>10, before, after)
	if n == 0 {
		t.Fatal("no mapping of the executable found")
	}
	// The test binary has run package init (and maybe other tests), so
	// megabytes of it are mapped; only what the lines above touch again
	// come back. (RssFile also counts the writable data segment and any
	// shared libraries, which are not released.)
	if before-after < 1024 {
		t.Fatalf("RssFile %d KiB -> %d KiB: start-up pages were not released", before, after)
	}
	// Still runs: code and read-only data fault back in.
	if s := strconv.Itoa(12345); s != "12345" {
		t.Fatal(s)
	}
}

func TestCleanExecSpans(t *testing.T) {
	const exe = "/usr/local/bin/resolver"
	smaps := `00400000-006eb000 r-xp 00000000 fe:00 42                                 /usr/local/bin/resolver
Size:               2988 kB
Rss:                1792 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
006eb000-00a0b000 r--p 002eb000 fe:00 42                                 /usr/local/bin/resolver
Rss:                2816 kB
Anonymous:             0 kB
00a0b000-00a0c000 r--p 0060b000 fe:00 42                                 /usr/local/bin/resolver
Rss:                   4 kB
Anonymous:             4 kB
00a0c000-00a3d000 rw-p 0060c000 fe:00 42                                 /usr/local/bin/resolver
Anonymous:            52 kB
00a3d000-02a7f000 rw-p 00000000 00:00 0
Anonymous:            92 kB
7f0000000000-7f0000001000 r--p 00000000 fe:00 43                         /usr/lib/other.so
Anonymous:             0 kB
7f0000002000-7f0000003000 r--s 00000000 fe:00 42                         /usr/local/bin/resolver
Anonymous:             0 kB
`
	got, err := cleanExecSpans(strings.NewReader(smaps), exe)
	if err != nil {
		t.Fatal(err)
	}
	// Code and read-only data; not the written read-only page (RELRO),
	// the data segment, anonymous memory, another file or a shared map.
	want := []span{{0x400000, 0x6eb000}, {0x6eb000, 0xa0b000}}
	if len(got) != len(want) {
		t.Fatalf("spans %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("spans %x, want %x", got, want)
		}
	}
}
