package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLeftoversSeeTheNodeNamespace: the leftover check reports the node
// namespace (and so kube-proxy's tables in it) for as long as anything keeps
// it: its holder process, then an open file descriptor of it (the negative
// control: a teardown that stopped every process but leaked such a
// reference would have passed a check that only looked at processes); only
// when nothing does is it gone. A namespace with the same inode and another
// cookie (the kernel reuses inodes) is not taken for it.
func TestLeftoversSeeTheNodeNamespace(t *testing.T) {
	p, path := testNetns(t)
	id, err := netnsIdentify(path)
	if err != nil {
		t.Fatal(err)
	}
	if id.Inode == 0 || id.Cookie == 0 {
		t.Fatalf("namespace id %+v", id)
	}
	s := &State{Netns: id}
	// Only the namespace's lines: a cluster running on the machine meanwhile
	// (its cgroups) is not this test's business.
	nsLeft := func(s *State) string {
		var l []string
		for _, x := range Leftovers(s) {
			if strings.HasPrefix(x, "node network namespace") {
				l = append(l, x)
			}
		}
		return strings.Join(l, "\n")
	}
	want := func(what string, substr ...string) {
		t.Helper()
		left := nsLeft(s)
		for _, sub := range substr {
			if !strings.Contains(left, sub) {
				t.Errorf("%s: leftovers %q lack %q", what, left, sub)
			}
		}
		if len(substr) == 0 && left != "" {
			t.Errorf("%s: leftovers %q, want none", what, left)
		}
	}
	want("holder running", fmt.Sprintf("pid %d (sleep) runs inside it", p.PID()))

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Logf("stop holder: %v", err)
	}
	want("holder gone, fd open", fmt.Sprintf("pid %d (%s) holds it open (fd %d)", os.Getpid(), selfComm(t), f.Fd()))
	other := &State{Netns: NetnsID{Inode: id.Inode, Cookie: id.Cookie + 1}}
	if left := nsLeft(other); left != "" {
		t.Errorf("a namespace with the same inode and another cookie was taken for the node's: %q", left)
	}
	f.Close()
	want("nothing holds it")
}

// testNetns makes a network namespace of the test's own (its holder is
// stopped at cleanup) and returns the holder and the namespace's path;
// it skips the test unless it runs as root.
func testNetns(t *testing.T) (*proc, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace of its own")
	}
	p, path, err := netnsHolder(filepath.Join(t.TempDir(), "netns.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return p, path
}

func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestNetnsThreadSwitchesBack: the thread inNetnsThread ran f on is still
// alive afterwards and back in this process's namespace. Negative control
// (run 2026-12-07): without the switch back (the thread left locked, to
// exit with its goroutine, as netnsDial did before 7397a89) the thread is
// gone and this fails; with the unlock but no switch back it is alive
// inside the node's namespace and this fails too. The test checks the
// thread itself, not the rare wedged main thread the bug showed as.
func TestNetnsThreadSwitchesBack(t *testing.T) {
	_, path := testNetns(t)
	node, err := netnsIdentify(path)
	if err != nil {
		t.Fatal(err)
	}
	self, err := netnsIdentify("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		var tid int
		var inside NetnsID
		if err := inNetnsThread(path, func() {
			tid = unix.Gettid()
			inside, _ = netnsIdentify(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
		}); err != nil {
			t.Fatal(err)
		}
		if inside != node {
			t.Fatalf("round %d: f ran in namespace %+v, want the node's %+v", i, inside, node)
		}
		after, err := netnsIdentify(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
		if err != nil {
			t.Fatalf("round %d: thread %d is gone after inNetnsThread: %v (it must be switched back and unlocked, not left to exit)", i, tid, err)
		}
		if after != self {
			t.Fatalf("round %d: thread %d is in namespace %+v after inNetnsThread, want this process's %+v", i, tid, after, self)
		}
	}
}
