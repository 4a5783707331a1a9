package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/resolver"
)

// TestParseConfig covers where each setting comes from (defaults, the
// --config file, flags, $DNSGUARD_UPSTREAMS, resolv.conf) and that every
// bad value is refused with an error naming it. Breaking the precedence in
// config.Load (parsing the flags only before reading the file) fails
// "config file, flag wins" and "flag list replaces file list".
func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rc := write("resolv.conf", "search x\nnameserver 127.0.0.1\nnameserver 10.96.0.10\nnameserver fd00::10\noptions ndots:5\n")
	cfgFile := write("resolver.yaml", "# comment\nserveStale: true\ncacheSize: 123\nupstreams: [192.0.2.9, 192.0.2.10]\ntimeout: 500ms\n")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c resolver.Config)
	}{
		{"resolv.conf minus self", []string{"--resolv-conf=" + rc}, nil, "", func(t *testing.T, c resolver.Config) {
			if strings.Join(c.Upstreams, ",") != "10.96.0.10:53,[fd00::10]:53" {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{"env", []string{"--resolv-conf=" + rc}, map[string]string{resolver.EnvUpstreams: "10.0.0.1:5353, 10.0.0.2"}, "", func(t *testing.T, c resolver.Config) {
			if strings.Join(c.Upstreams, ",") != "10.0.0.1:5353,10.0.0.2" {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{"flags beat env", []string{"--upstream=10.0.0.3", "--upstream=10.0.0.4:54"}, map[string]string{resolver.EnvUpstreams: "10.0.0.1"}, "", func(t *testing.T, c resolver.Config) {
			if strings.Join(c.Upstreams, ",") != "10.0.0.3,10.0.0.4:54" {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{"file beats env", []string{"--config=" + cfgFile}, map[string]string{resolver.EnvUpstreams: "10.0.0.1"}, "", func(t *testing.T, c resolver.Config) {
			if strings.Join(c.Upstreams, ",") != "192.0.2.9,192.0.2.10" {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{"config file, flag wins", []string{"--config=" + cfgFile, "--cache-size=7"}, nil, "", func(t *testing.T, c resolver.Config) {
			if !c.ServeStale || c.CacheSize != 7 || c.Upstreams[0] != "192.0.2.9" || c.Timeout != 500*time.Millisecond {
				t.Fatalf("config %+v", c)
			}
			if c.MaxTTL != time.Hour { // neither in the file nor a flag: the default
				t.Fatalf("max-ttl %v", c.MaxTTL)
			}
		}},
		{"flag list replaces file list", []string{"--config=" + cfgFile, "--upstream=10.0.0.7", "--upstream=10.0.0.8"}, nil, "", func(t *testing.T, c resolver.Config) {
			if strings.Join(c.Upstreams, ",") != "10.0.0.7,10.0.0.8" {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{"flag order does not matter", []string{"--cache-size=7", "--config=" + cfgFile}, nil, "", func(t *testing.T, c resolver.Config) {
			if c.CacheSize != 7 {
				t.Fatalf("cache-size %d", c.CacheSize)
			}
		}},
		{"file unknown key", []string{"--config=" + write("typo.yaml", "upstreams: [10.0.0.1]\ncachesize: 5\n")}, nil, `unknown key "cachesize"`, nil},
		{"file old name = value format", []string{"--config=" + write("old.conf", "serve-stale = true\n")}, nil, "old.conf", nil},
		{"file bad duration", []string{"--config=" + write("dur.yaml", "upstreams: [10.0.0.1]\ntimeout: fast\n")}, nil, `key timeout: value "fast"`, nil},
		{"file wrong type", []string{"--config=" + write("type.yaml", "upstreams: [10.0.0.1]\ncacheSize: lots\n")}, nil, `key cacheSize: value "lots"`, nil},
		{"file bad value named by flag and key", []string{"--config=" + write("bad.yaml", "upstreams: [10.0.0.1]\ncacheSize: 0\n")}, nil, "--cache-size=0 [cacheSize]", nil},
		{"file missing", []string{"--config=" + filepath.Join(dir, "nope.yaml")}, nil, "nope.yaml", nil},
		{"non-loopback refused", []string{"--listen=0.0.0.0:53", "--upstream=10.0.0.1"}, nil, "--listen=0.0.0.0:53", nil},
		{"non-loopback allowed", []string{"--listen=0.0.0.0:53", "--allow-non-loopback", "--upstream=10.0.0.1"}, nil, "", nil},
		{"self as upstream", []string{"--listen=127.0.0.1:53", "--upstream=127.0.0.1"}, nil, "--upstream=127.0.0.1", nil},
		{"bad upstream", []string{"--upstream=dns.example"}, nil, "--upstream=dns.example", nil},
		{"bad timeout", []string{"--upstream=10.0.0.1", "--total-timeout=10ms"}, nil, "--total-timeout=10ms", nil},
		{"bad duration", []string{"--upstream=10.0.0.1", "--timeout=fast"}, nil, "fast", nil},
		{"bad min timeout", []string{"--upstream=10.0.0.1", "--min-timeout=0s"}, nil, "--min-timeout=0s [minTimeout]", nil},
		{"min timeout from the file", []string{"--config=" + write("min.yaml", "upstreams: [10.0.0.1]\nminTimeout: 250ms\n")}, nil, "", func(t *testing.T, c resolver.Config) {
			if c.MinTimeout != 250*time.Millisecond || c.Timeout != time.Second {
				t.Fatalf("min-timeout %v, timeout %v", c.MinTimeout, c.Timeout)
			}
		}},
		{"bad cache size", []string{"--upstream=10.0.0.1", "--cache-size=0"}, nil, "--cache-size=0", nil},
		{"cache bytes suffix", []string{"--upstream=10.0.0.1", "--cache-bytes=2m"}, nil, "", func(t *testing.T, c resolver.Config) {
			if c.CacheBytes != 2<<20 {
				t.Fatalf("cache-bytes %d", c.CacheBytes)
			}
		}},
		{"no upstream at all", []string{"--resolv-conf=/nonexistent"}, nil, "--resolv-conf=/nonexistent", nil},
		{"bad log level", []string{"--upstream=10.0.0.1", "--log-level=loud"}, nil, "--log-level=loud", nil},
		{"stray argument", []string{"--upstream=10.0.0.1", "serve"}, nil, `unexpected argument "serve"`, nil},
		{"metrics off by default", []string{"--upstream=10.0.0.1"}, nil, "", func(t *testing.T, c resolver.Config) {
			if c.MetricsListen != "" {
				t.Fatalf("metrics-listen %q by default", c.MetricsListen)
			}
		}},
		{"metrics on every interface", []string{"--upstream=10.0.0.1", "--metrics-listen=:9153"}, nil, "", func(t *testing.T, c resolver.Config) {
			if c.MetricsListen != ":9153" {
				t.Fatalf("metrics-listen %q", c.MetricsListen)
			}
		}},
		{"metrics non-loopback IP", []string{"--upstream=10.0.0.1", "--metrics-listen=0.0.0.0:9253"}, nil, "", nil},
		{"metrics IPv6", []string{"--upstream=10.0.0.1", "--metrics-listen=[::]:9253"}, nil, "", nil},
		{"metrics no port", []string{"--upstream=10.0.0.1", "--metrics-listen=9153"}, nil, "--metrics-listen=9153", nil},
		{"metrics port not a number", []string{"--upstream=10.0.0.1", "--metrics-listen=:metrics"}, nil, "--metrics-listen=:metrics", nil},
		{"metrics port too big", []string{"--upstream=10.0.0.1", "--metrics-listen=:65536"}, nil, "--metrics-listen=:65536", nil},
		{"metrics host name", []string{"--upstream=10.0.0.1", "--metrics-listen=localhost:9153"}, nil, "--metrics-listen=localhost:9153", nil},
		{"metrics on the health address", []string{"--upstream=10.0.0.1", "--metrics-listen=127.0.0.1:8053"}, nil, "--metrics-listen=127.0.0.1:8053", nil},
		{"metrics wildcard over the health port", []string{"--upstream=10.0.0.1", "--metrics-listen=:8053"}, nil, "--metrics-listen=:8053", nil},
		{"metrics over a wildcard health port", []string{"--upstream=10.0.0.1", "--health-listen=:9254", "--metrics-listen=10.0.0.5:9254"}, nil, "--metrics-listen=10.0.0.5:9254", nil},
		{"metrics on the health port of another address", []string{"--upstream=10.0.0.1", "--health-listen=127.0.0.1:9254", "--metrics-listen=10.0.0.5:9254"}, nil, "", nil},
		{"metrics on the DNS port", []string{"--upstream=10.0.0.1", "--metrics-listen=0.0.0.0:53"}, nil, "--metrics-listen=0.0.0.0:53", nil},
		{"metrics and health both port 0", []string{"--upstream=10.0.0.1", "--health-listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0"}, nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, env(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestHelpNamesEveryKey: --help explains every flag and gives each its
// --config key, and that key is one the file accepts. Dropping a [key]
// from a usage string, or misspelling one, fails this test.
func TestHelpNamesEveryKey(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, want := range []string{"Usage: resolver", "resolver probe", "--config"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	c := resolver.DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	key := regexp.MustCompile(`\[(\w+)\]$`)
	dir := t.TempDir()
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "-"+f.Name) {
			t.Errorf("--help lacks --%s", f.Name)
		}
		m := key.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("--%s: usage names no config key: %q", f.Name, f.Usage)
			return
		}
		// The key must be accepted by the file (null keeps the default).
		p := filepath.Join(dir, f.Name+".yaml")
		os.WriteFile(p, []byte(m[1]+": null\n"), 0o600)
		if _, err := parseConfig([]string{"--config=" + p, "--upstream=10.0.0.1"}, func(string) string { return "" }, io.Discard); err != nil {
			t.Errorf("--%s [%s]: %v", f.Name, m[1], err)
		}
	})
}
