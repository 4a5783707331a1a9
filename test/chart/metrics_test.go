//go:build chart

package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
)

// series is one sample's name and labels on a binary's /metrics.
type series struct {
	name   string
	labels map[string]string
}

// scrape is what the real binaries expose: every sample, by binary.
type scrape map[string][]series

// monitoringArgs render every monitor, every alert group and the dashboard:
// the webhook and the certificate controller (ServiceMonitors) and the
// resolvers (PodMonitors).
var monitoringArgs = []string{"-f", chartRel + "/ci/monitoring-values.yaml", "-f", chartRel + "/ci/resolver-metrics-values.yaml"}

// TestQueriedMetricsExported renders the chart with every monitor, then
// checks each metric selector of every PrometheusRule expression and every
// dashboard query against the /metrics of the real binaries (cmd/webhook,
// cmd/certs controller, cmd/resolver), started on loopback (the controller
// with a directory store: the chart's Secrets store needs an API server,
// and both register the same metrics in runController): the metric name
// must be exposed and every label matcher that is not a target label
// (namespace, pod, service, endpoint) must match an exposed series.
// Negative controls (each made once, each failed this test): renaming
// dnsguard_webhook_serving_cert_expiry_timestamp_seconds to
// dnsguard_certificate_expiry_timestamp_seconds in prometheusrule.yaml
// ("... is exposed by no binary"); deleting the m.initChildren() call in
// webhook.NewMetrics (before any review, dnsguard_webhook_reviews_total
// and _skips_total "are exposed by no binary"); writing reason
// "no-namespaces" in DNSGuardPodsSkipped's regex ("no exposed series
// matches reason=\"no-namespaces\"").
func TestQueriedMetricsExported(t *testing.T) {
	exposed := runBinaries(t)
	r := render(t, monitoringArgs...)
	exprs := map[string]string{}
	for _, pr := range crds(t, r, "PrometheusRule") {
		var p prometheusRule
		strictJSON(t, pr, &p)
		for _, g := range p.Spec.Groups {
			for _, ru := range g.Rules {
				exprs["alert "+ru.Alert] = ru.Expr
			}
		}
	}
	for name, expr := range dashboardExprs(t, r) {
		exprs[name] = expr
	}
	if len(exprs) < 15 {
		t.Fatalf("only %d expressions rendered; the monitoring values lost a group?", len(exprs))
	}
	checked := 0
	for where, expr := range exprs {
		for _, sel := range selectors(expr) {
			checked++
			if err := exposed.match(sel); err != nil {
				t.Errorf("%s: %v\n  expr: %s", where, err, expr)
			}
		}
	}
	t.Logf("%d selectors in %d expressions checked against %d exposed series", checked, len(exprs), exposed.count())
}

// promSelector is one `name{matchers}` of a PromQL expression.
type promSelector struct {
	name     string
	matchers [][3]string // label, op, value
}

var (
	selectorRE = regexp.MustCompile(`\b(dnsguard_[a-z_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

func selectors(expr string) []promSelector {
	var out []promSelector
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		s := promSelector{name: m[1]}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			s.matchers = append(s.matchers, [3]string{mm[1], mm[2], mm[3]})
		}
		out = append(out, s)
	}
	return out
}

// targetLabels are attached by Prometheus at scrape time, not by a binary.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "service": true, "endpoint": true, "job": true, "instance": true, "container": true}

func (s scrape) count() int {
	n := 0
	for _, ss := range s {
		n += len(ss)
	}
	return n
}

// match says why no exposed series satisfies sel, or nil.
func (s scrape) match(sel promSelector) error {
	var named []series
	for _, ss := range s {
		for _, x := range ss {
			if x.name == sel.name {
				named = append(named, x)
			}
		}
	}
	if len(named) == 0 {
		return fmt.Errorf("metric %s is exposed by no binary", sel.name)
	}
	for _, m := range sel.matchers {
		if targetLabels[m[0]] || m[1] == "!=" || m[1] == "!~" {
			continue
		}
		re, err := regexp.Compile("^(?:" + m[2] + ")$")
		if m[1] == "=" {
			re, err = regexp.Compile("^" + regexp.QuoteMeta(m[2]) + "$")
		}
		if err != nil {
			return fmt.Errorf("%s: matcher %s%s%q: %v", sel.name, m[0], m[1], m[2], err)
		}
		// Every alternative of a regex matcher must exist, so a renamed
		// skip reason inside reason=~"a|b|c" is caught too.
		alts := []string{m[2]}
		if m[1] == "=~" {
			alts = strings.Split(m[2], "|")
		}
		for _, alt := range alts {
			found := false
			for _, x := range named {
				if v, ok := x.labels[m[0]]; ok && re.MatchString(v) && (m[1] == "=" || v == alt) {
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("%s: no exposed series matches %s=%q (exposed: %v)", sel.name, m[0], alt, labelValues(named, m[0]))
			}
		}
	}
	return nil
}

func labelValues(ss []series, label string) []string {
	seen := map[string]bool{}
	for _, x := range ss {
		seen[x.labels[label]] = true
	}
	return keys(seen)
}

// dashboardExprs are the dashboard's queries by panel.
func dashboardExprs(t *testing.T, r *rendered) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, cm := range all[*corev1.ConfigMap](r) {
		js, ok := cm.Data["dnsguard.json"]
		if !ok {
			continue
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					RefID string `json:"refId"`
					Expr  string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal([]byte(js), &d); err != nil {
			t.Fatalf("dashboard JSON: %v", err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out["panel "+p.Title+" "+tg.RefID] = tg.Expr
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no dashboard rendered")
	}
	return out
}

// runBinaries builds and starts the three binaries on loopback, makes the
// resolver answer one query (its upstream is a closed port, so the
// SERVFAIL and upstream error series exist, as in a failing pod), waits
// for the certificate controller's first reconcile and scrapes them all.
func runBinaries(t *testing.T) scrape {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../../cmd/webhook", "../../cmd/certs", "../../cmd/resolver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	certDir := t.TempDir()
	ports := freePorts(t, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }

	start(t, bin+"/certs", "controller", "--out-dir="+certDir, "--metrics-listen="+addr(0), "--log-level=warn")
	waitFor(t, "certificate controller's first reconcile", func() error {
		_, err := os.Stat(filepath.Join(certDir, "tls.key"))
		return err
	})
	start(t, bin+"/webhook", "--listen="+addr(1), "--metrics-listen="+addr(2),
		"--tls-cert-file="+certDir+"/tls.crt", "--tls-key-file="+certDir+"/tls.key",
		"--nameservers=10.96.0.10", "--namespace-defaults=false", "--log-level=warn")
	// ports[4] is closed (freePorts released it): the upstream refuses.
	start(t, bin+"/resolver", "--listen="+addr(3), "--upstream="+addr(4), "--metrics-listen="+addr(5), "--health-listen=", "--log-level=warn")

	out := scrape{}
	for _, tgt := range []struct{ name, url, ready string }{
		{"certs", "http://" + addr(0) + "/metrics", "dnsguard_certs_last_success_timestamp_seconds"},
		{"webhook", "http://" + addr(2) + "/metrics", "dnsguard_webhook_serving_cert_expiry_timestamp_seconds"},
	} {
		waitFor(t, tgt.name+" /metrics", func() error {
			ss, err := scrapeURL(tgt.url)
			if err != nil {
				return err
			}
			for _, x := range ss {
				if x.name == tgt.ready {
					out[tgt.name] = ss
					return nil
				}
			}
			return fmt.Errorf("no %s yet", tgt.ready)
		})
	}
	out["resolver"] = resolverScrape(t, addr(3), "http://"+addr(5)+"/metrics")
	return out
}

// resolverScrape queries the resolver once and scrapes it.
func resolverScrape(t *testing.T, dnsAddr, metricsURL string) []series {
	t.Helper()
	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("example.test.", dns.TypeA)
	waitFor(t, "resolver answers", func() error {
		r, _, err := c.Exchange(m, dnsAddr)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeServerFailure {
			return fmt.Errorf("rcode %s, want SERVFAIL (the upstream is a closed port)", dns.RcodeToString[r.Rcode])
		}
		return nil
	})
	var ss []series
	waitFor(t, "resolver /metrics", func() error {
		var err error
		ss, err = scrapeURL(metricsURL)
		if err != nil {
			return err
		}
		for _, x := range ss {
			if x.name == "dnsguard_resolver_upstream_errors_total" {
				return nil
			}
		}
		return fmt.Errorf("no dnsguard_resolver_upstream_errors_total yet")
	})
	return ss
}

func scrapeURL(url string) ([]series, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	var out []series
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if f.GetType().String() == "HISTOGRAM" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					out = append(out, series{name + s, l})
				}
				continue
			}
			out = append(out, series{name, l})
		}
	}
	return out, nil
}

// freePorts reserves n loopback TCP ports and releases them for the
// binaries (the kernel does not hand a just-closed port out again soon).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// start runs a binary until the test ends, then stops it by its PID.
func start(t *testing.T, path string, args ...string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(path), stderr.String())
		}
	})
}

// waitFor retries f for at most 15 s.
func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
