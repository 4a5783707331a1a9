package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Options says how Start runs a process.
type Options struct {
	// Log is the file that receives stdout and stderr (appended to, so a
	// component restarted into the same log keeps its history). Required.
	Log string
	// Env is added to this process's environment.
	Env []string
	// Group puts the process in a process group of its own: a Ctrl-C meant
	// for the test runner does not reach it, and Stop signals the whole
	// group, so children it forked go with it.
	Group bool
	// Cloneflags are passed to clone(2), e.g. syscall.CLONE_NEWNET for a
	// process that holds a new network namespace.
	Cloneflags uintptr
}

// Proc is a process started by Start. Every method is safe to call from any
// goroutine; the process is reaped by a goroutine of its own, so a Proc
// never leaves a zombie behind once it exits.
type Proc struct {
	Name string
	Log  string

	cmd    *exec.Cmd
	group  bool
	done   chan struct{}
	err    error     // set before done is closed
	exitAt time.Time // set before done is closed
}

// Start runs argv with its output in opts.Log.
func Start(name string, opts Options, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: no command", name)
	}
	if opts.Log == "" {
		return nil, fmt.Errorf("start %s: no log file", name)
	}
	logf, err := os.OpenFile(opts.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	if opts.Group || opts.Cloneflags != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: opts.Group, Cloneflags: opts.Cloneflags}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: opts.Log, cmd: cmd, group: opts.Group, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.err, p.exitAt = err, time.Now()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process ID (also the process group ID with Options.Group).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited reports whether the process has ended, and with what error (nil:
// exit status 0).
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Err is the exit error; it blocks until the process has exited.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// ExitedAt is when the exit was seen; it blocks until the process has exited.
func (p *Proc) ExitedAt() time.Time {
	<-p.done
	return p.exitAt
}

// Signal sends sig to the process alone (not its group). A process that has
// already exited is not signalled: its PID may belong to someone else.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("signal %s: %w", p.Name, os.ErrProcessDone)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits at most timeout for the process to exit and returns its exit
// error, or an error saying it still runs.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.PID(), timeout)
	}
}

// WaitUntil calls ready every interval until it returns true, the process
// exits or timeout passes; the error of the last two holds the end of the
// log.
func (p *Proc) WaitUntil(timeout, interval time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited (%v) before it was ready; end of its log:\n%s", p.Name, err, p.Tail(20))
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s; end of its log:\n%s", p.Name, timeout, p.Tail(20))
		}
		time.Sleep(interval)
	}
}

// Stop sends SIGTERM, then SIGKILL if the process has not exited after
// grace, and waits for it. With Options.Group the signals go to the group,
// and members that outlive the leader are killed too. The returned error is
// the exit error, nil when the process exited with status 0 or because of
// the SIGTERM Stop sent.
func (p *Proc) Stop(grace time.Duration) error {
	p.kill(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill(syscall.SIGKILL)
		<-p.done
	}
	if p.group {
		// The leader is reaped, so its PID may be reused, but not its group
		// ID while a member lives: this reaches only our leftovers.
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	}
	if terminatedBy(p.err, syscall.SIGTERM) {
		return nil
	}
	return p.err
}

// Kill sends SIGKILL (to the group with Options.Group) and waits.
func (p *Proc) Kill() {
	p.kill(syscall.SIGKILL)
	<-p.done
}

// kill signals the process (or its group) unless it is known to have exited.
// os.Process.Signal itself refuses once the process is reaped; a group ID
// stays ours while any member lives, so the group signal can only reach a
// stranger in the instant between the reap and done being closed.
func (p *Proc) kill(sig syscall.Signal) {
	if !p.Alive() {
		return
	}
	if p.group {
		_ = syscall.Kill(-p.PID(), sig)
		return
	}
	_ = p.cmd.Process.Signal(sig)
}

// Tail is the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return Tail(p.Log, n) }

// terminatedBy reports whether err is the exit of a process killed by sig.
func terminatedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
