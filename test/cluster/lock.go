package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// State is what a run has started or changed on the machine, written before
// each change so that a run killed at any point can be cleaned up by the
// next one.
type State struct {
	RunDir string `json:"runDir"`
	// Sysctls are the host's values before kubelet rewrote them.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Procs are the processes this run started, with their start times so a
	// recycled PID is never killed.
	Procs []ProcRef `json:"procs,omitempty"`
	// Started is when the run began: shim sockets younger than this in
	// containerd's fixed directory are ours.
	Started time.Time `json:"started"`
	// Netns is the node's network namespace: teardown must see it freed
	// (kube-proxy's tables and the rest of the node's rules go with it).
	Netns NetnsID `json:"netns,omitzero"`
	// NodeNetns are the other nodes' namespaces (Config.Nodes > 1), which
	// teardown must see freed too.
	NodeNetns []NetnsID `json:"nodeNetns,omitempty"`
	// CgroupRoots are the kubelet cgroup roots this run created besides
	// the first node's "/" ("/dgnode2"): removed with what is under them.
	CgroupRoots []string `json:"cgroupRoots,omitempty"`
	Keep        bool     `json:"keep,omitempty"`
}

// ProcRef identifies one started process across PID reuse.
type ProcRef struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // field 22 of /proc/PID/stat
}

// lock is the machine-wide exclusive lock of a running cluster.
type lock struct {
	f     *os.File
	state string
}

// acquire takes the lock, waiting (and saying so) while another run holds it.
func acquire(dir string, logf func(string, ...any)) (*lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(filepath.Join(dir, "owner"))
		logf("another cluster run holds %s (%s); waiting for it to finish", f.Name(), strings.TrimSpace(string(holder)))
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("wait for lock: %w", err)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "owner"), fmt.Appendf(nil, "pid %d since %s\n", os.Getpid(), time.Now().Format(time.RFC3339)), 0o644)
	return &lock{f: f, state: filepath.Join(dir, "state.json")}, nil
}

func (l *lock) release() {
	_ = os.Remove(filepath.Join(filepath.Dir(l.state), "owner"))
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}

// load returns the state a previous run left, or nil.
func (l *lock) load() (*State, error) {
	b, err := os.ReadFile(l.state)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", l.state, err)
	}
	return &s, nil
}

// save writes the state atomically.
func (l *lock) save(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return os.Rename(tmp, l.state)
}

func (l *lock) clear() error {
	if err := os.Remove(l.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// procStartTime reads the start time of pid, or 0 when it is gone or a
// zombie.
func procStartTime(pid int) uint64 {
	s, err := harness.ReadStat(pid)
	if err != nil || s.State == 'Z' || s.State == 'X' {
		return 0
	}
	return s.StartTime
}

// alive reports whether the process p refers to still runs (and is not a
// recycled PID).
func (p ProcRef) alive() bool {
	st := procStartTime(p.PID)
	return st != 0 && st == p.StartTime
}
