package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths kubelet and containerd use whatever their configuration says; only
// entries newer than the run's start are removed.
var fixedDirs = []string{
	"/var/lib/kubelet", // device-plugins, plugins_registry, pod-resources
	"/run/containerd",  // s/ (shim sockets), runc/ (runc state), fifo/
	"/var/log/containers",
	"/var/log/pods",
	"/var/lib/cni", // libcni's result cache
	"/run/netns",   // pod namespaces, should containerd put them there after all
}

// cleanup undoes everything a run recorded in s, whether the run ends now or
// was killed earlier. It is safe to call more than once.
func cleanup(s *State, logf func(string, ...any)) error {
	var errs []error
	// 1. Processes we started, newest first, so kubelet does not restart
	// containers while they are being killed.
	for i := len(s.Procs) - 1; i >= 0; i-- {
		if strings.HasPrefix(s.Procs[i].Name, "kubelet") {
			killRef(s.Procs[i], 5*time.Second)
		}
	}
	// 2. Every container and shim: the processes in kubelet's cgroups, and
	// the runc shims (daemonized, so not in any of our process groups).
	killed := killCgroupProcs(s.CgroupRoots)
	killed += killShims(s.RunDir)
	if killed > 0 {
		logf("killed %d container and shim processes", killed)
	}
	for i := len(s.Procs) - 1; i >= 0; i-- {
		killRef(s.Procs[i], 10*time.Second)
	}
	// 3. Mounts kubelet (volumes) and containerd (rootfs, shm) made under the
	// run directory.
	if n, err := unmountUnder(s.RunDir); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		logf("unmounted %d mounts under %s", n, s.RunDir)
	}
	// 4. kubelet's cgroups.
	if err := removeCgroups(s.CgroupRoots); err != nil {
		errs = append(errs, err)
	}
	// 5. Files in the hard-coded host paths.
	for _, d := range fixedDirs {
		removeNewer(d, s.Started)
	}
	// 6. Kernel settings.
	if err := restoreSysctls(s.Sysctls, logf); err != nil {
		errs = append(errs, err)
	}
	if !s.Keep && s.RunDir != "" {
		if err := os.RemoveAll(s.RunDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.RunDir, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupRoots are kubelet's top cgroups (cgroupsPerQOS with cgroupfs) in
// each v1 hierarchy and in the unified one: the first node's kubepods and
// the other nodes' cgroup roots (extra, "/dgnode2"), which hold their
// kubepods.
func cgroupRoots(extra []string) []string {
	var roots []string
	names := append([]string{"kubepods"}, extra...)
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, name := range names {
		for _, e := range ents {
			p := filepath.Join("/sys/fs/cgroup", e.Name(), name)
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				roots = append(roots, p)
			}
		}
		if p := filepath.Join("/sys/fs/cgroup", name); dirExists(p) {
			roots = append(roots, p)
		}
	}
	return roots
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// killCgroupProcs SIGKILLs every process in kubelet's cgroups (containers and
// pause processes) and returns how many it signalled.
func killCgroupProcs(extra []string) int {
	seen := map[int]bool{}
	for round := 0; round < 3; round++ {
		for _, root := range cgroupRoots(extra) {
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						seen[pid] = true
					}
				}
				return nil
			})
		}
		time.Sleep(200 * time.Millisecond)
	}
	return len(seen)
}

// shimPIDs lists the containerd-shim-runc-v2 processes of this run: they are
// daemonized (in no process group of ours), and their command line names our
// containerd socket under runDir.
func shimPIDs(runDir string) []int {
	if runDir == "" {
		return nil
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if cmd := string(b); strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, runDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killShims(runDir string) int {
	pids := shimPIDs(runDir)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) (int, error) {
	if dir == "" {
		return 0, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	prefix := filepath.Clean(dir) + "/"
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp+"/", prefix) {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	n := 0
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// unescapeMount decodes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes kubelet's cgroup trees bottom-up (rmdir only works
// on empty cgroups, which they are once their processes are gone).
func removeCgroups(extra []string) error {
	var errs []error
	for _, root := range cgroupRoots(extra) {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for try := 0; try < 20; try++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeNewer deletes the entries of dir modified at or after since (what a
// run created in a path it cannot redirect), and dir itself when it ends up
// empty and is itself that new.
func removeNewer(dir string, since time.Time) {
	if since.IsZero() {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		if !info.ModTime().Before(since) {
			p := filepath.Join(dir, e.Name())
			_ = syscall.Unmount(p, syscall.MNT_DETACH) // a namespace bind mount
			_ = os.RemoveAll(p)
		}
	}
	if st, err := os.Stat(dir); err == nil && !st.ModTime().Before(since.Add(-time.Second)) {
		_ = os.Remove(dir) // only succeeds when empty
	}
}

// Leftovers lists what a run left on the machine: it is empty after a clean
// teardown. The e2e suite checks it after every run.
func Leftovers(s *State) []string {
	var left []string
	for _, p := range s.Procs {
		if p.alive() {
			left = append(left, fmt.Sprintf("process %s (pid %d)", p.Name, p.PID))
		}
	}
	for _, r := range cgroupRoots(s.CgroupRoots) {
		left = append(left, "cgroup "+r)
	}
	if s.RunDir != "" {
		if n := countMountsUnder(s.RunDir); n > 0 {
			left = append(left, fmt.Sprintf("%d mounts under %s", n, s.RunDir))
		}
		if !s.Keep {
			if _, err := os.Stat(s.RunDir); err == nil {
				left = append(left, "directory "+s.RunDir)
			}
		}
	}
	for n, v := range s.Sysctls {
		if cur, err := readSysctl(n); err == nil && cur != v {
			left = append(left, fmt.Sprintf("sysctl %s = %s (was %s)", n, cur, v))
		}
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if info, err := e.Info(); err == nil && !info.ModTime().Before(s.Started) {
				left = append(left, "network namespace /run/netns/"+e.Name())
			}
		}
	}
	// The node namespace must be gone: kube-proxy's tables (nftables mode:
	// table ip/ip6 kube-proxy; iptables mode: its chains) live in it and
	// nowhere else, so a freed namespace is the proof they are gone.
	for _, h := range netnsHolders(s.Netns) {
		left = append(left, fmt.Sprintf("node network namespace (inode %d, with kube-proxy's rules) kept alive: %s", s.Netns.Inode, h))
	}
	for _, id := range s.NodeNetns {
		for _, h := range netnsHolders(id) {
			left = append(left, fmt.Sprintf("second node's network namespace (inode %d, with its kube-proxy's rules) kept alive: %s", id.Inode, h))
		}
	}
	if n := len(shimPIDs(s.RunDir)); n > 0 {
		left = append(left, fmt.Sprintf("%d containerd shims", n))
	}
	return left
}

func countMountsUnder(dir string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	prefix := filepath.Clean(dir) + "/"
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && strings.HasPrefix(unescapeMount(f[4])+"/", prefix) {
			n++
		}
	}
	return n
}
