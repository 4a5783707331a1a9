package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child process of these tests
// (HARNESS_CHILD names its role), so they need nothing but Go and a shell.
func TestMain(m *testing.M) {
	if role := os.Getenv("HARNESS_CHILD"); role != "" {
		child(role)
		return
	}
	os.Exit(m.Run())
}

// allocMiB is what the "alloc" child keeps resident.
const allocMiB = 48

var sink []byte

func child(role string) {
	// A child joins its memory cgroup itself, before allocating: Linux 6.x
	// no longer moves charges with a process (move_charge_at_immigrate).
	if cg := os.Getenv("HARNESS_MEMCG"); cg != "" {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Println("join cgroup:", err)
			os.Exit(1)
		}
	}
	switch role {
	case "alloc":
		sink = make([]byte, allocMiB<<20)
		for i := 0; i < len(sink); i += 4096 {
			sink[i] = 1 // touch every page: allocated is not resident
		}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "spin":
		// Burn 300 ms of CPU as measured by the kernel itself.
		for {
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= 300*time.Millisecond {
				break
			}
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// startChild runs this test binary in the given role and waits until it
// says it is ready.
func startChild(t *testing.T, role string, opts Options) *Proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Log == "" {
		opts.Log = filepath.Join(t.TempDir(), role+".log")
	}
	opts.Env = append(opts.Env, "HARNESS_CHILD="+role)
	p, err := Start(role, opts, self)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := p.WaitUntil(10*time.Second, 10*time.Millisecond, func() bool { return strings.Contains(Tail(p.Log, 1), "ready") }); err != nil {
		t.Fatal(err)
	}
	return p
}

// pidAlive reports whether pid names a live process (not a zombie).
func pidAlive(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && s.State != 'Z' && s.State != 'X'
}

// Breaking FreePort (returning the port while the UDP socket is still
// bound) makes the UDP listen below fail.
func TestFreePortIsFreeForUDPAndTCP(t *testing.T) {
	for range 20 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatalf("port %d not free for UDP: %v", port, err)
		}
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			u.Close()
			t.Fatalf("port %d not free for TCP: %v", port, err)
		}
		u.Close()
		l.Close()
	}
}

// Breaking Stop to signal the group of the wrong PID, or every process of
// ours, leaves a alive or kills b.
func TestStopEndsOnlyItsProcess(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			a := startChild(t, "idle", Options{Group: group})
			b := startChild(t, "idle", Options{Group: group})
			start := time.Now()
			if err := a.Stop(5 * time.Second); err != nil {
				t.Errorf("stop after SIGTERM: %v, want nil", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("SIGTERM stop took %s: it waited for the SIGKILL", took)
			}
			if a.Alive() || pidAlive(a.PID()) {
				t.Errorf("a (pid %d) still runs after Stop", a.PID())
			}
			if !b.Alive() || !pidAlive(b.PID()) {
				t.Fatalf("b (pid %d) was ended by a's Stop", b.PID())
			}
			if err := a.Stop(time.Second); err != nil {
				t.Errorf("second Stop: %v, want nil", err)
			}
			if err := a.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("Signal after exit: %v, want ErrProcessDone", err)
			}
		})
	}
}

// Breaking the SIGKILL escalation makes Stop hang (the test times out) or
// return early with the process alive.
func TestStopKillsAfterGrace(t *testing.T) {
	p := startChild(t, "ignore-term", Options{})
	const grace = 300 * time.Millisecond
	start := time.Now()
	err := p.Stop(grace)
	if took := time.Since(start); took < grace {
		t.Errorf("Stop returned after %s, before the %s grace", took, grace)
	}
	if !terminatedBy(err, syscall.SIGKILL) {
		t.Errorf("exit %v, want killed by SIGKILL", err)
	}
	if pidAlive(p.PID()) {
		t.Errorf("pid %d still runs", p.PID())
	}
}

// A shell that forks a sleep: Stop of a group takes the sleep with it,
// Stop of a lone process leaves it (then the test kills it by its PID).
// Breaking Options.Group (no Setpgid, or signals to the PID only) fails the
// group case.
func TestStopGroupTakesChildren(t *testing.T) {
	for _, group := range []bool{true, false} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "sh.log")
			p, err := Start("sh", Options{Log: log, Group: group}, "sh", "-c", "sleep 60 & echo $!; wait")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			var kid int
			if err := p.WaitUntil(5*time.Second, 10*time.Millisecond, func() bool {
				kid, err = strconv.Atoi(strings.TrimSpace(Tail(log, 1)))
				return err == nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(5 * time.Second); err != nil {
				t.Fatalf("stop: %v", err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for pidAlive(kid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			alive := pidAlive(kid)
			if !group && alive {
				_ = syscall.Kill(kid, syscall.SIGKILL) // ours: the sleep the shell forked
			}
			if alive == group {
				t.Errorf("group=%v: forked sleep (pid %d) alive=%v after Stop", group, kid, alive)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	p, err := Start("false", Options{Log: filepath.Join(t.TempDir(), "x.log")}, "sh", "-c", "echo bye; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Wait(5 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v, want status 3", err)
	}
	if done, derr := p.Exited(); !done || derr != err {
		t.Errorf("Exited() = %v, %v", done, derr)
	}
	if p.ExitedAt().IsZero() {
		t.Error("ExitedAt is zero")
	}
	if got := p.Tail(5); got != "bye" {
		t.Errorf("log %q, want bye", got)
	}
	if err := p.WaitUntil(time.Second, 10*time.Millisecond, func() bool { return false }); err == nil || !strings.Contains(err.Error(), "bye") {
		t.Errorf("WaitUntil on an exited process: %v, want the exit with its log", err)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts Options
		argv []string
		want string
	}{
		{"no command", Options{Log: filepath.Join(dir, "a.log")}, nil, "no command"},
		{"no log", Options{}, []string{"true"}, "no log file"},
		{"log dir missing", Options{Log: filepath.Join(dir, "missing", "a.log")}, []string{"true"}, "log:"},
		{"no binary", Options{Log: filepath.Join(dir, "b.log")}, []string{filepath.Join(dir, "nonexistent")}, "nonexistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(tc.name, tc.opts, tc.argv...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The memory of a child that keeps 48 MiB resident against an idle one.
// Reading the wrong line (VmSize) or the wrong unit fails the idle bound.
func TestReadMemOfChild(t *testing.T) {
	idle := startChild(t, "idle", Options{})
	fat := startChild(t, "alloc", Options{})
	mi, err := ReadMem(idle.PID())
	if err != nil {
		t.Fatal(err)
	}
	mf, err := ReadMem(fat.PID())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle %+v KiB, alloc %+v KiB", mi, mf)
	const want = allocMiB << 10
	if mf.RSS < want || mf.Anon < want || mf.HWM < mf.RSS {
		t.Errorf("alloc child: %+v KiB, want RSS and RssAnon >= %d and HWM >= RSS", mf, want)
	}
	if mi.Anon >= want || mi.RSS <= 0 || mi.HWM < mi.RSS {
		t.Errorf("idle child: %+v KiB, want 0 < RSS <= HWM and RssAnon < %d", mi, want)
	}
	if err := fat.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMem(fat.PID()); err == nil {
		t.Errorf("ReadMem of a reaped process succeeded")
	}
}

// Breaking the field numbers (off by one) fails the CPU check.
func TestReadStatOfChild(t *testing.T) {
	p := startChild(t, "spin", Options{})
	s, err := ReadStat(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUTicks < 25 || s.CPUTicks > 5*ClockTick {
		t.Errorf("child that burnt 300 ms of CPU: %d ticks, want 25..500", s.CPUTicks)
	}
	self, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.StartTime < self.StartTime || s.StartTime == 0 {
		t.Errorf("child start time %d before ours %d", s.StartTime, self.StartTime)
	}
	if again, _ := ReadStat(p.PID()); again.StartTime != s.StartTime {
		t.Errorf("start time changed: %d then %d", s.StartTime, again.StartTime)
	}
}

// parseCase is one file under testdata and what parsing it gives.
type parseCase[T comparable] struct {
	file    string
	want    T
	wantErr string // a part of the error; empty: no error
}

func runParseCases[T comparable](t *testing.T, parse func([]byte) (T, error), cases []parseCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parse(b)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil || got != tc.want:
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	runParseCases(t, parseStatus, []parseCase[Mem]{
		{"status-resolver", Mem{RSS: 9876, HWM: 11220, Anon: 4100}, ""},
		{"status-kthread", Mem{}, "0 of VmRSS"},
		{"status-zombie-partial", Mem{}, "1 of VmRSS"},
		{"status-bad-unit", Mem{}, "N kB"},
		{"status-bad-number", Mem{}, "bad number"},
	})
	if _, err := ReadMem(0); err == nil {
		t.Error("ReadMem(0) succeeded")
	}
}

func TestParseStat(t *testing.T) {
	runParseCases(t, parseStat, []parseCase[Stat]{
		{"stat-plain", Stat{State: 'S', CPUTicks: 49, StartTime: 98765}, ""},
		{"stat-paren-comm", Stat{State: 'R', CPUTicks: 11, StartTime: 123}, ""},
		{"stat-short", Stat{}, "want at least 20"},
		{"stat-no-comm", Stat{}, "no ')'"},
		{"stat-bad-field", Stat{}, "field 14"},
	})
	if _, err := ReadStat(-1); err == nil {
		t.Error("ReadStat(-1) succeeded")
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"a\nb\n\n\n", 1, "b"},
		{"", 3, ""},
		{"a\n", 0, ""},
	} {
		if got := LastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if got := Tail(filepath.Join(t.TempDir(), "none"), 3); !strings.HasPrefix(got, "(no log: ") {
		t.Errorf("Tail of a missing file = %q", got)
	}
}
