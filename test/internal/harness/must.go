package harness

import (
	"path/filepath"
	"testing"
)

// MustFreePort is FreePort for tests: no port ends the test.
func MustFreePort(t testing.TB) int {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MustMem is ReadMem for tests: an unreadable status ends the test.
func MustMem(t testing.TB, pid int) Mem {
	t.Helper()
	m, err := ReadMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// MustStart runs argv with its log in the test's temporary directory. At
// the end of the test the process is killed and, when the test failed, the
// end of its log is logged.
func MustStart(t testing.TB, name string, argv ...string) *Proc {
	t.Helper()
	p, err := Start(name, Options{Log: filepath.Join(t.TempDir(), name+".log")}, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("last 40 lines of the %s log:\n%s", name, p.Tail(40))
		}
	})
	return p
}
