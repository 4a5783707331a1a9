package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLeftoversSeeTheNodeNamespace: the leftover check reports the node
// namespace (and so kube-proxy's tables in it) for as long as anything keeps
// it: its holder process, then an open file descriptor of it (the negative
// control: a teardown that stopped every process but leaked such a
// reference would have passed a check that only looked at processes); only
// when nothing does is it gone. A namespace with the same inode and another
// cookie (the kernel reuses inodes) is not taken for it.
func TestLeftoversSeeTheNodeNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace of its own")
	}
	p, path, err := netnsHolder(filepath.Join(t.TempDir(), "netns.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
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

func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
