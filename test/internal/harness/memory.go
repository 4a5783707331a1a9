package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PSS is a process's proportional set size from /proc/PID/smaps_rollup, in
// KiB: every resident page divided by the number of processes that map it.
// Unlike VmRSS it does not count a shared library's pages in full for each
// process, so dynamically linked servers and static ones compare fairly.
type PSS struct {
	Total int64 // Pss
	Anon  int64 // Pss_Anon: heap and stacks, private to the process
	File  int64 // Pss_File: executable, libraries and other file pages
}

// ReadPSS reads /proc/PID/smaps_rollup (Linux 4.14; Pss_Anon and Pss_File
// since 5.9).
func ReadPSS(pid int) (PSS, error) { return readProc(pid, "smaps_rollup", parseRollup) }

func parseRollup(b []byte) (PSS, error) {
	var p PSS
	err := parseKiBLines(b, map[string]*int64{"Pss": &p.Total, "Pss_Anon": &p.Anon, "Pss_File": &p.File})
	return p, err
}

// parseKiBLines fills dst from the "Key:  N kB" lines of a /proc file;
// every key must be there, since a silent zero would pass any "memory
// stayed low" check.
func parseKiBLines(b []byte, dst map[string]*int64) error {
	seen := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		p := dst[key]
		if !ok || p == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("line %q: want \"%s: N kB\"", line, key)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("line %q: bad number", line)
		}
		*p = n
		seen++
	}
	if seen != len(dst) {
		keys := make([]string, 0, len(dst))
		for k := range dst {
			keys = append(keys, k)
		}
		return fmt.Errorf("%d of %d keys %v found (process exited, a zombie or a kernel thread?)", seen, len(dst), keys)
	}
	return nil
}

// Memcg is what a cgroup v1 memory controller charges its processes, in
// KiB: what the kubelet's limit and the OOM killer look at, page cache
// included.
type Memcg struct {
	Usage    int64 // memory.usage_in_bytes
	MaxUsage int64 // memory.max_usage_in_bytes: the peak since the cgroup was made (or reset)
	RSS      int64 // memory.stat rss: anonymous memory
	Cache    int64 // memory.stat cache: page cache, the executable's and libraries' pages among it
	Mapped   int64 // memory.stat mapped_file: the part of the cache mapped into a process
	OOMKills int64 // memory.oom_control oom_kill: processes the OOM killer ended in this cgroup
	Failcnt  int64 // memory.failcnt: times the limit was hit (and reclaim ran)
}

// ReadMemcg reads a cgroup v1 memory controller directory.
func ReadMemcg(dir string) (Memcg, error) {
	var m Memcg
	one := func(file string) (int64, error) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q is not a byte count", filepath.Join(dir, file), strings.TrimSpace(string(b)))
		}
		return n, nil
	}
	var err error
	if m.Usage, err = one("memory.usage_in_bytes"); err != nil {
		return Memcg{}, err
	}
	if m.MaxUsage, err = one("memory.max_usage_in_bytes"); err != nil {
		return Memcg{}, err
	}
	if m.Failcnt, err = one("memory.failcnt"); err != nil {
		return Memcg{}, err
	}
	m.Usage, m.MaxUsage = m.Usage>>10, m.MaxUsage>>10
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return Memcg{}, err
	}
	if err := parseKeyValues(stat, map[string]*int64{"rss": &m.RSS, "cache": &m.Cache, "mapped_file": &m.Mapped}); err != nil {
		return Memcg{}, fmt.Errorf("%s: %w", filepath.Join(dir, "memory.stat"), err)
	}
	m.RSS, m.Cache, m.Mapped = m.RSS>>10, m.Cache>>10, m.Mapped>>10
	oom, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return Memcg{}, err
	}
	if err := parseKeyValues(oom, map[string]*int64{"oom_kill": &m.OOMKills}); err != nil {
		return Memcg{}, fmt.Errorf("%s: %w", filepath.Join(dir, "memory.oom_control"), err)
	}
	return m, nil
}

// parseKeyValues fills dst from "key N" lines (memory.stat, oom_control);
// every key must be there.
func parseKeyValues(b []byte, dst map[string]*int64) error {
	seen := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || dst[f[0]] == nil {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("line %q: bad number", line)
		}
		*dst[f[0]] = n
		seen++
	}
	if seen != len(dst) {
		return fmt.Errorf("%d of %d keys found", seen, len(dst))
	}
	return nil
}
