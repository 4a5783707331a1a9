package cluster

import (
	"syscall"
	"time"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// proc is one component process: in its own process group (so a Ctrl-C
// meant for the test runner does not reach it and teardown can stop it with
// its children), inside the node's network namespace, output to a log file.
// ref is what the state file records of it.
type proc struct {
	*harness.Proc
	ref ProcRef
}

// start runs argv inside the network namespace netns (a /proc/PID/ns/net
// path; empty: the host's) with extra environment env.
func start(name, netns, logPath string, env []string, argv ...string) (*proc, error) {
	if netns != "" {
		// nsenter --net only: `ip netns exec` would also unshare the mount
		// namespace and mount a fresh sysfs, hiding the cgroup mounts under
		// /sys/fs/cgroup from kubelet and containerd.
		argv = append([]string{"nsenter", "--net=" + netns, "--"}, argv...)
	}
	return startWith(name, harness.Options{Log: logPath, Env: env, Group: true}, argv...)
}

// startWith starts a process and names it for the state file.
func startWith(name string, opts harness.Options, argv ...string) (*proc, error) {
	p, err := harness.Start(name, opts, argv...)
	if err != nil {
		return nil, err
	}
	return &proc{Proc: p, ref: ProcRef{Name: name, PID: p.PID(), StartTime: procStartTime(p.PID())}}, nil
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
