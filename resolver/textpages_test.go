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
