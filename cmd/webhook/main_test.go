package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
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
		"--default-mode=dnsconfig", "--sidecar-fallback=false", "--dns-options=ndots:2,edns0", "--sidecar-image-pull-secrets=regcred, mirror"}, false)
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
	cfg, err = parseConfig([]string{"--config=" + file, "--tls-cert-file=a", "--tls-key-file=b"}, false)
	if err != nil || cfg.DefaultMode != webhook.ModeSidecar {
		t.Fatalf("%v %q", err, cfg.DefaultMode)
	}
}

func TestBadValuesNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nameservers=10.96.0.x"}, `"10.96.0.x"`},
		{[]string{"--nameservers=10.96.0.10", "--default-mode=turbo"}, `"turbo"`},
		{[]string{"--nameservers=10.96.0.10", "--cluster-domain=bad_domain"}, `"bad_domain"`},
		{[]string{"--nameservers=10.96.0.10", "--tls-cert-file=/nonexistent/tls.crt"}, "/nonexistent/tls.crt"},
		{[]string{"--nameservers=10.96.0.10", "--no-such-flag"}, "no-such-flag"},
		{[]string{"--config=/nonexistent.yaml"}, "/nonexistent.yaml"},
		{[]string{"--nameservers=10.96.0.10", "--sidecar-image-pull-secrets=ok,Not_OK"}, `"Not_OK"`},
	} {
		args := append([]string{"--tls-cert-file=/dev/null", "--tls-key-file=/dev/null"}, tc.args...)
		_, err := parseConfig(args, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %s", tc.args, err, tc.want)
		}
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	// parseConfig's FlagSet prints usage to stderr; capture it.
	r, w, _ := os.Pipe()
	stderr := os.Stderr
	os.Stderr = w
	_, err := parseConfig([]string{"--help"}, false)
	w.Close()
	os.Stderr = stderr
	out := new(bytes.Buffer)
	out.ReadFrom(r)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range []string{"listen", "tls-cert-file", "tls-key-file", "nameservers", "cluster-domain", "default-mode",
		"sidecar-image", "sidecar-image-pull-secrets", "sidecar-fallback", "config", "log-level", "dns-service", "kubeconfig", "dns-options", "/explain", "dnsguard.io/mode"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

func TestProcessFlags(t *testing.T) {
	base := []string{"--tls-cert-file=a", "--tls-key-file=b", "--nameservers=10.0.0.10"}
	_, po, err := parseFlags(base, false)
	if err != nil {
		t.Fatal(err)
	}
	if po.drain != (webhook.Drain{Delay: webhook.DefaultShutdownDelay, Timeout: webhook.DefaultShutdownTimeout}) || po.tlsSecret != "" {
		t.Errorf("defaults: %+v", po)
	}
	_, po, err = parseFlags(append(base, "--shutdown-delay=3s", "--shutdown-timeout=7s", "--tls-secret=dg/dnsguard-tls"), false)
	if err != nil || po.drain.Delay != 3*time.Second || po.drain.Timeout != 7*time.Second || po.tlsSecret != "dg/dnsguard-tls" {
		t.Errorf("set: %+v %v", po, err)
	}
	for _, bad := range [][]string{{"--shutdown-delay=-1s"}, {"--shutdown-timeout=0s"}, {"--tls-secret=nonamespace"}, {"--tls-secret=a/b/c"}, {"--tls-secret=/x"}} {
		if _, _, err := parseFlags(append(base, bad...), false); err == nil {
			t.Errorf("%v accepted", bad)
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
		{"negative", []string{"--sidecar-metrics-port=-1"}, 0, "--sidecar-metrics-port=-1"},
		{"too big", []string{"--sidecar-metrics-port=65536"}, 0, "--sidecar-metrics-port=65536"},
		{"wraps into int32 range", []string{"--sidecar-metrics-port=4294976449"}, 0, "--sidecar-metrics-port=4294976449"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(append(append([]string{}, base...), tc.args...), false)
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
	r, w, _ := os.Pipe()
	stderr := os.Stderr
	os.Stderr = w
	_, _ = parseConfig([]string{"--help"}, false)
	w.Close()
	os.Stderr = stderr
	out := new(bytes.Buffer)
	out.ReadFrom(r)
	if !strings.Contains(out.String(), "sidecar-metrics-port") || !strings.Contains(out.String(), "[sidecar.metricsPort]") {
		t.Errorf("--help does not document --sidecar-metrics-port [sidecar.metricsPort]")
	}
}
