package resolver

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestValidateOnlyValidates: Validate reads no file and changes no
// setting; ResolveUpstreams is the one step that takes upstreams from
// resolv.conf, skipping the resolver's own addresses. Putting the
// resolv.conf fallback back into Validate fails the first check; setting
// ReusePort inside Validate in node mode fails the last.
func TestValidateOnlyValidates(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 10.96.0.10\nnameserver 169.254.20.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.ResolvConf = rc
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--upstream= [upstreams]") || len(c.Upstreams) != 0 {
		t.Fatalf("Validate without upstreams: %v, upstreams %v", err, c.Upstreams)
	}
	if err := c.ResolveUpstreams(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.96.0.10:53", "169.254.20.10:53"}; !slices.Equal(c.Upstreams, want) {
		t.Fatalf("upstreams %v, want %v", c.Upstreams, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	// In node mode the node-local address is the resolver itself.
	n := DefaultConfig()
	n.ResolvConf, n.NodeLocal, n.ClusterUpstreams = rc, true, []string{"10.96.0.10"}
	if err := n.ResolveUpstreams(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.96.0.10:53"}; !slices.Equal(n.Upstreams, want) {
		t.Fatalf("node mode upstreams %v, want %v (own address skipped)", n.Upstreams, want)
	}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.ReusePort || !n.reusePort() {
		t.Fatalf("node mode: ReusePort setting %v (Validate must not set it), effective %v", n.ReusePort, n.reusePort())
	}
}
