// Command memsample is how hack/bench.sh and hack/soak.sh start a server in
// a memory cgroup of its own and read what it costs, so that servers
// compare by the memory a pod pays for rather than by VmRSS alone (which
// counts a shared library in full for every process, and none of the page
// cache a cgroup is charged for).
//
//	memsample exec --cgroup=DIR -- CMD ARGS...   make the cgroup v1 memory directory DIR, drop CMD's file from the page cache, join DIR and exec CMD
//	memsample header [--prefix=P]               the column names of a sample, tab-separated
//	memsample sample --pid=N [--cgroup=DIR]      one sample, tab-separated KiB; the cgroup's columns are "-" without --cgroup
//	memsample rm --cgroup=DIR                   remove DIR once its processes are gone
//
// The page-cache drop makes every server pay for its own executable: a
// binary read before (by the build or a previous run) is charged to
// whichever cgroup read it first, not to the server. Shared libraries that
// other processes map stay cached and uncharged; PSS counts their share.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dnsguard/dnsguard/test/internal/harness"
	"golang.org/x/sys/unix"
)

// columns are the sample's fields: KiB, and last a count.
var columns = []string{"vmrss_kib", "hwm_kib", "rss_anon_kib", "pss_kib", "pss_anon_kib", "cg_usage_kib", "cg_peak_kib", "cg_rss_kib", "cg_cache_kib", "cg_oom_kills"}

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("memsample", "err", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: memsample exec|header|sample|rm [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	cgroup := fs.String("cgroup", "", "cgroup v1 memory directory")
	pid := fs.Int("pid", 0, "process to sample")
	prefix := fs.String("prefix", "", "prefix of every column name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "exec":
		return execIn(*cgroup, fs.Args())
	case "header":
		names := make([]string, len(columns))
		for i, c := range columns {
			names[i] = *prefix + c
		}
		fmt.Println(strings.Join(names, "\t"))
		return nil
	case "sample":
		s, err := sample(*pid, *cgroup)
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(s, "\t"))
		return nil
	case "rm":
		return remove(*cgroup)
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func execIn(dir string, argv []string) error {
	if dir == "" || len(argv) == 0 {
		return errors.New("exec needs --cgroup=DIR and a command after --")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("make cgroup: %w", err)
	}
	if err := dropCache(path); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("join cgroup: %w", err)
	}
	return syscall.Exec(path, argv, os.Environ())
}

// dropCache asks the kernel to drop the file's pages from the page cache
// (pages some process maps stay).
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Dirty pages (a binary just built) are not dropped: write them first.
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("write back %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}

func sample(pid int, dir string) ([]string, error) {
	m, err := harness.ReadMem(pid)
	if err != nil {
		return nil, err
	}
	p, err := harness.ReadPSS(pid)
	if err != nil {
		return nil, err
	}
	out := []string{i(m.RSS), i(m.HWM), i(m.Anon), i(p.Total), i(p.Anon), "-", "-", "-", "-", "-"}
	if dir != "" {
		c, err := harness.ReadMemcg(dir)
		if err != nil {
			return nil, err
		}
		copy(out[5:], []string{i(c.Usage), i(c.MaxUsage), i(c.RSS), i(c.Cache), i(c.OOMKills)})
	}
	return out, nil
}

func i(n int64) string { return strconv.FormatInt(n, 10) }

// remove retries for a few seconds: the kernel refuses rmdir while the
// last process's exit is still being uncharged.
func remove(dir string) error {
	if dir == "" {
		return errors.New("rm needs --cgroup=DIR")
	}
	var err error
	for range 50 {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup: %w", err)
}
