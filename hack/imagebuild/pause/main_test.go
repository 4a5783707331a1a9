package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func buildPause(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pause")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return bin
}

// TestTermExitsZero: the kubelet stops a sandbox with SIGTERM; pause must
// exit 0 promptly, not wait for SIGKILL.
func TestTermExitsZero(t *testing.T) {
	bin := buildPause(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHandlers(t, cmd.Process.Pid)
		// A SIGCHLD without a child must not end it.
		_ = cmd.Process.Signal(syscall.SIGCHLD)
		time.Sleep(50 * time.Millisecond)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatalf("%v: pause already gone: %v", sig, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: exit %v, want 0", sig, err)
			}
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%v: still running after 3s", sig)
		}
	}
}

// waitHandlers waits until pid catches SIGTERM and SIGCHLD (SigCgt in
// /proc/PID/status): a fixed sleep is not enough on a loaded machine, and a
// signal sent earlier would get the default action.
func waitHandlers(t *testing.T, pid int) {
	t.Helper()
	want := uint64(1)<<(uint(syscall.SIGTERM)-1) | uint64(1)<<(uint(syscall.SIGCHLD)-1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err == nil && mask&want == want {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pause (pid %d) did not install its signal handlers within 10s", pid)
}

// children lists the PIDs /proc says pid is the parent of (zombies
// included).
func children(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		t.Skipf("no /proc children list: %v", err)
	}
	return strings.Fields(string(b))
}

// TestReapsOrphans runs pause as PID 1 of a new PID namespace, orphans a
// process into it and checks pause first adopts, then reaps it (a zombie
// would stay in its children list).
func TestReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("no nsenter")
	}
	bin := buildPause(t)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	waitHandlers(t, pid)
	// sh exits at once; its background sleep is orphaned into the namespace.
	orphan := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-p", "--", "/bin/sh", "-c", "sleep 2 & exit 0")
	if b, err := orphan.CombinedOutput(); err != nil {
		t.Fatalf("nsenter: %v: %s", err, b)
	}
	adopted := false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := len(children(t, pid))
		if n > 0 {
			adopted = true
		} else if adopted {
			return // adopted, exited and reaped
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !adopted {
		// Seen once under CI on a loaded machine: the orphan never showed
		// up as pause's child, so there was nothing to reap; that says
		// nothing about reaping.
		t.Skipf("the orphan was never seen as a child of pause (pid %d); reaping not exercised", pid)
	}
	t.Fatalf("children after 10s: %v (a zombie left unreaped)", children(t, pid))
}
