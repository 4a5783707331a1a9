package certs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestControllerFiles: the directory store (make run, the local suites, a
// webhook outside the cluster) goes through the same lifecycle as the
// Secrets: created, left alone while current, repaired when a file is
// lost, renewed at 2/3 of the life. Keys are private, the CA stays in its
// own directory.
func TestControllerFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // created by the store
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := NewController(nil, ControllerConfig{OutDir: dir, Hosts: []string{"127.0.0.1", "localhost"},
		Validity: time.Hour, CAValidity: 10 * time.Hour, Now: func() time.Time { return now }, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p ...string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(append([]string{dir}, p...)...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	steps := []struct {
		name           string
		before         func()
		leaf, rotateCA bool
	}{
		{"first run", func() {}, true, true},
		{"current", func() { now = now.Add(time.Minute) }, false, false},
		{"tls.key lost", func() { os.Remove(filepath.Join(dir, SecretKeyKey)) }, true, false},
		{"ca.crt (bundle) lost", func() { os.Remove(filepath.Join(dir, SecretKeyCA)) }, false, false},
		{"past 2/3 of the leaf's life", func() { now = now.Add(41 * time.Minute) }, true, false},
		// No webhook configuration: nothing to wait for before a leaf of the
		// new CA is served.
		{"CA key lost", func() { os.Remove(filepath.Join(dir, "ca", SecretKeyCAKey)) }, true, true},
	}
	for _, st := range steps {
		st.before()
		crtBefore, _ := os.ReadFile(filepath.Join(dir, SecretKeyCert))
		res, err := c.Reconcile(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if res.LeafIssued != st.leaf || res.CARotated != st.rotateCA {
			t.Errorf("%s: leaf issued %v, CA rotated %v; want %v, %v", st.name, res.LeafIssued, res.CARotated, st.leaf, st.rotateCA)
		}
		if changed := !bytes.Equal(crtBefore, read(SecretKeyCert)); changed != st.leaf {
			t.Errorf("%s: tls.crt changed %v, want %v", st.name, changed, st.leaf)
		}
		for _, h := range []string{"127.0.0.1", "localhost"} {
			if err := verifyChain(read(SecretKeyCA), read(SecretKeyCert), h, now); err != nil {
				t.Errorf("%s: %v", st.name, err)
			}
		}
		if _, err := tlsPairOK(map[string][]byte{SecretKeyCert: read(SecretKeyCert), SecretKeyKey: read(SecretKeyKey)}); err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
	}
	for p, want := range map[string]os.FileMode{".": 0o755 | os.ModeDir, SecretKeyKey: 0o600, SecretKeyCert: 0o644, "ca": 0o700 | os.ModeDir, "ca/" + SecretKeyCAKey: 0o600} {
		if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode(), err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, SecretKeyCAKey)); err == nil {
		t.Error("the CA key is beside the serving key; it belongs in ca/")
	}
}
