package harness

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mem is a process's memory from /proc/PID/status, in KiB.
type Mem struct {
	RSS  int64 // VmRSS: resident now
	HWM  int64 // VmHWM: peak resident since start (the kernel's own maximum)
	Anon int64 // RssAnon: resident anonymous memory (heap, stacks), no file pages
}

// ReadMem reads the memory lines of /proc/PID/status.
func ReadMem(pid int) (Mem, error) { return readProc(pid, "status", parseStatus) }

// parseStatus reads the "Key:  N kB" lines of a status file. All three
// must be there: a zombie or a kernel thread has none, and a silent zero
// would pass any "RSS stayed low" check.
func parseStatus(b []byte) (Mem, error) {
	var m Mem
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon}
	seen := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		dst := fields[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("status line %q: want \"%s: N kB\"", line, key)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return Mem{}, fmt.Errorf("status line %q: bad number", line)
		}
		*dst = n
		seen++
	}
	if seen != len(fields) {
		return Mem{}, fmt.Errorf("status has %d of VmRSS, VmHWM, RssAnon (exited, a zombie or a kernel thread?)", seen)
	}
	return m, nil
}

// ClockTick is USER_HZ, fixed at 100 on Linux for every architecture Go
// supports, so the tick counts of /proc/PID/stat convert without cgo's
// sysconf.
const ClockTick = 100

// Stat is what the suites read from /proc/PID/stat.
type Stat struct {
	State     byte   // field 3: R, S, D, Z, ...
	CPUTicks  uint64 // fields 14 and 15: user plus system time, in ClockTick units
	StartTime uint64 // field 22: start time in ticks since boot; with the PID it names a process across PID reuse
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) { return readProc(pid, "stat", parseStat) }

// readProc reads /proc/PID/FILE and parses it, naming both in errors.
func readProc[T any](pid int, file string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	if pid <= 0 {
		return zero, fmt.Errorf("/proc/%d/%s: not a process ID", pid, file)
	}
	path := fmt.Sprintf("/proc/%d/%s", pid, file)
	b, err := os.ReadFile(path)
	if err != nil {
		return zero, err // names the path already
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// parseStat splits after the last ')': the command name in parentheses may
// hold spaces and parentheses itself.
func parseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("no ')' after the command name in %.60q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field N is f[N-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	var nums [3]uint64
	for j, idx := range []int{14 - 3, 15 - 3, 22 - 3} {
		n, err := strconv.ParseUint(f[idx], 10, 64)
		if err != nil {
			return Stat{}, fmt.Errorf("field %d: %w", idx+3, err)
		}
		nums[j] = n
	}
	return Stat{State: f[0][0], CPUTicks: nums[0] + nums[1], StartTime: nums[2]}, nil
}
