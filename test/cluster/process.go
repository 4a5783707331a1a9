package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is one component process: in its own process group (so a Ctrl-C
// meant for the test runner does not reach it and teardown can stop it with
// its children), inside the node's network namespace, output to a log file.
type proc struct {
	ref  ProcRef
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs argv inside the network namespace netns (a /proc/PID/ns/net
// path; empty: the host's) with extra environment env.
func start(name, netns, logPath string, env []string, argv ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	if netns != "" {
		// nsenter --net only: `ip netns exec` would also unshare the mount
		// namespace and mount a fresh sysfs, hiding the cgroup mounts under
		// /sys/fs/cgroup from kubelet and containerd.
		argv = append([]string{"nsenter", "--net=" + netns, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	p.ref = ProcRef{Name: name, PID: cmd.Process.Pid, StartTime: procStartTime(cmd.Process.Pid)}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	_ = syscall.Kill(-p.ref.PID, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.ref.PID, syscall.SIGKILL)
		<-p.done
	}
	// Children that left the group are gone with it; a group member that
	// outlived the leader gets the same treatment.
	_ = syscall.Kill(-p.ref.PID, syscall.SIGKILL)
}

// killRef stops a process of an earlier run that is no longer our child:
// TERM to its group, then KILL, checking the start time so a recycled PID is
// never signalled.
func killRef(r ProcRef, grace time.Duration) {
	if !r.alive() {
		return
	}
	_ = syscall.Kill(-r.PID, syscall.SIGTERM)
	_ = syscall.Kill(r.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for r.alive() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if r.alive() {
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		_ = syscall.Kill(r.PID, syscall.SIGKILL)
	}
}
