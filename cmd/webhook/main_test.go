package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/webhook"
)

func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("nameservers: [10.0.0.10]\ndefaultMode: sidecar\nclusterDomain: file.local\nsidecar: {image: file/image:1, fallback: true}\n"), 0o600)
	cfg, err := parseConfig([]string{"--config=" + file, "--tls-cert-file=a", "--tls-key-file=b",
		"--default-mode=dnsconfig", "--sidecar-fallback=false", "--dns-options=ndots:2,edns0", "--sidecar-image-pull-secrets=regcred, mirror"}, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultMode != webhook.ModeDNSConfig {
		t.Errorf("flag did not override file: mode %q", cfg.DefaultMode)
	}
	if cfg.Sidecar.Fallback {
		t.Error("--sidecar-fallback=false did not override the file")
	}
	if !slices.Equal(cfg.Sidecar.ImagePullSecrets, []string{"regcred", "mirror"}) {
		t.Errorf("--sidecar-image-pull-secrets: %q", cfg.Sidecar.ImagePullSecrets)
	}
	if cfg.ClusterDomain != "file.local" || cfg.Sidecar.Image != "file/image:1" || len(cfg.Nameservers) != 1 {
		t.Errorf("file values lost: %+v", cfg)
	}
	if len(cfg.DNSOptions) != 2 || cfg.DNSOptions[0].Name != "ndots" || *cfg.DNSOptions[0].Value != "2" || cfg.DNSOptions[1].Value != nil {
		t.Errorf("dns options %+v", cfg.DNSOptions)
	}
	// Flag defaults do not override the file: only flags given explicitly do.
	cfg, err = parseConfig([]string{"--config=" + file, "--tls-cert-file=a", "--tls-key-file=b"}, false, io.Discard)
	if err != nil || cfg.DefaultMode != webhook.ModeSidecar {
		t.Fatalf("%v %q", err, cfg.DefaultMode)
	}
}

func TestBadValuesNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nameservers=10.96.0.x"}, "--nameservers=10.96.0.x [nameservers]"},
		{[]string{"--nameservers=10.96.0.10", "--default-mode=turbo"}, "--default-mode=turbo [defaultMode]"},
		{[]string{"--nameservers=10.96.0.10", "--cluster-domain=bad_domain"}, "--cluster-domain=bad_domain [clusterDomain]"},
		{[]string{"--nameservers=10.96.0.10", "--tls-cert-file=/nonexistent/tls.crt"}, "/nonexistent/tls.crt"},
		{[]string{"--nameservers=10.96.0.10", "--no-such-flag"}, "no-such-flag"},
		{[]string{"--config=/nonexistent.yaml"}, "/nonexistent.yaml"},
		{[]string{"--nameservers=10.96.0.10", "--sidecar-image-pull-secrets=ok,Not_OK"}, `"Not_OK"`},
	} {
		args := append([]string{"--tls-cert-file=/dev/null", "--tls-key-file=/dev/null"}, tc.args...)
		_, err := parseConfig(args, true, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %s", tc.args, err, tc.want)
		}
	}
}

// TestHelpDocumentsEveryFlag: --help explains every flag with its
// --config key in brackets, and the file accepts that key. Dropping a
// [key] from a usage string, or misspelling one, fails this test.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, false, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, f := range []string{"config", "/explain", "dnsguard.io/mode", "sidecar.resources"} {
		if !strings.Contains(help, f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
	c := webhook.DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	key := regexp.MustCompile(`\[([\w.]+)\]$`)
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
		doc := "null"
		parts := strings.Split(m[1], ".")
		for i := len(parts) - 1; i > 0; i-- {
			doc = "{" + parts[i] + ": " + doc + "}"
		}
		p := filepath.Join(dir, f.Name+".yaml")
		os.WriteFile(p, []byte(parts[0]+": "+doc+"\n"), 0o600)
		if _, err := parseConfig([]string{"--config=" + p, "--tls-cert-file=a", "--tls-key-file=b"}, false, io.Discard); err != nil {
			t.Errorf("--%s [%s]: %v", f.Name, m[1], err)
		}
	})
}

// TestProcessFlags: the shutdown and Secret-watch settings, flags only
// until this change, now come from the file too, and bad values are named.
func TestProcessFlags(t *testing.T) {
	base := []string{"--tls-cert-file=a", "--tls-key-file=b", "--nameservers=10.0.0.10"}
	cfg, err := parseConfig(base, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownDelay != webhook.DefaultShutdownDelay || cfg.ShutdownTimeout != webhook.DefaultShutdownTimeout || cfg.TLSSecret != "" {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parseConfig(append(base, "--shutdown-delay=3s", "--shutdown-timeout=7s", "--tls-secret=dg/dnsguard-tls"), false, io.Discard)
	if err != nil || cfg.ShutdownDelay != 3*time.Second || cfg.ShutdownTimeout != 7*time.Second || cfg.TLSSecret != "dg/dnsguard-tls" {
		t.Errorf("set: %+v %v", cfg, err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("shutdownDelay: 4s\ntlsSecret: ns/name\n"), 0o600)
	cfg, err = parseConfig(append(base, "--config="+file), false, io.Discard)
	if err != nil || cfg.ShutdownDelay != 4*time.Second || cfg.TLSSecret != "ns/name" {
		t.Errorf("from the file: %+v %v", cfg, err)
	}
	for _, tc := range []struct {
		arg, want string
	}{
		{"--shutdown-delay=-1s", "--shutdown-delay=-1s [shutdownDelay]"},
		{"--shutdown-timeout=0s", "--shutdown-timeout=0s [shutdownTimeout]"},
		{"--tls-secret=nonamespace", "--tls-secret=nonamespace [tlsSecret]"},
		{"--tls-secret=a/b/c", "--tls-secret=a/b/c"},
		{"--tls-secret=/x", "--tls-secret=/x"},
	} {
		if _, err := parseConfig(append(base, tc.arg), false, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.arg, err, tc.want)
		}
	}
}

// TestSidecarMetricsPortFlag: --sidecar-metrics-port follows the pattern of
// the other sidecar settings (off by default, the flag beats the file) and
// names a bad port, including ones an int32 would wrap into range.
func TestSidecarMetricsPortFlag(t *testing.T) {
	base := []string{"--tls-cert-file=a", "--tls-key-file=b", "--nameservers=10.0.0.10"}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("sidecar: {metricsPort: 9153}\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want int32
		err  string
	}{
		{"default off", nil, 0, ""},
		{"flag", []string{"--sidecar-metrics-port=9153"}, 9153, ""},
		{"file", []string{"--config=" + file}, 9153, ""},
		{"flag beats file", []string{"--config=" + file, "--sidecar-metrics-port=9300"}, 9300, ""},
		{"flag turns it off", []string{"--config=" + file, "--sidecar-metrics-port=0"}, 0, ""},
		{"dns port", []string{"--sidecar-metrics-port=53"}, 0, "metricsPort 53"},
		{"health port", []string{"--sidecar-metrics-port=8053"}, 0, "metricsPort 8053"},
		{"negative", []string{"--sidecar-metrics-port=-1"}, 0, `"-1" for flag -sidecar-metrics-port`},
		{"too big", []string{"--sidecar-metrics-port=65536"}, 0, `"65536" for flag -sidecar-metrics-port`},
		{"wraps into int32 range", []string{"--sidecar-metrics-port=4294976449"}, 0, `"4294976449" for flag -sidecar-metrics-port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(append(append([]string{}, base...), tc.args...), false, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil || cfg.Sidecar.MetricsPort != tc.want {
				t.Fatalf("metricsPort %d (%v), want %d", cfg.Sidecar.MetricsPort, err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	_, _ = parseConfig([]string{"--help"}, false, &out)
	if !strings.Contains(out.String(), "sidecar-metrics-port") || !strings.Contains(out.String(), "[sidecar.metricsPort]") {
		t.Errorf("--help does not document --sidecar-metrics-port [sidecar.metricsPort]")
	}
}

// --version exits like --help (main returns 0) before any validation, so
// it works without the TLS files a real start needs.
func TestVersionFlag(t *testing.T) {
	_, err := parseConfig([]string{"--version"}, true, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--version: %v, want flag.ErrHelp", err)
	}
}
