//go:build chart

package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// ruleTestsDir holds the promtool unit tests of the rendered rules; each
// file names rule_files: [rules.yaml], which TestPromtoolRules writes
// beside a copy of it.
const ruleTestsDir = "testdata/rules"

func promtoolBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		p = "../../bin/promtool"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("promtool binary %s: %v (run `./hack/build-tools.sh promtool` or set PROMTOOL)", abs, err)
	}
	return abs
}

// TestPromtoolRules renders the PrometheusRule with every group, checks
// its groups with `promtool check rules`, then runs the unit tests of
// testdata/rules on recorded input series: each alert must fire (labels
// and annotations compared) in at least one test and be expected silent in
// at least one other evaluation.
// Negative controls (each made once, each failed this test): writing a
// fixed "> 0.5" for DNSGuardWebhookErrors' "> webhookErrorRatio" in
// prometheusrule.yaml (promtool: both expected DNSGuardWebhookErrors alerts
// at 20m missing); moving resolver.yaml away ("alert
// DNSGuardResolverServfail is never made to fire").
func TestPromtoolRules(t *testing.T) {
	promtool := promtoolBin(t)
	var pr prometheusRule
	strictJSON(t, one1(t, crds(t, render(t, monitoringArgs...), "PrometheusRule")), &pr)
	rules, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out.String())
		}
		t.Logf("promtool %v:\n%s", args, out.String())
	}
	run("check", "rules", "rules.yaml")

	files, err := filepath.Glob(filepath.Join(ruleTestsDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in %s: %v", ruleTestsDir, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rt struct {
			RuleFiles []string `json:"rule_files"`
			Tests     []struct {
				AlertRuleTest []struct {
					Alertname string `json:"alertname"`
					ExpAlerts []any  `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		if err := yaml.Unmarshal(b, &rt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(rt.RuleFiles) != 1 || rt.RuleFiles[0] != "rules.yaml" {
			t.Errorf("%s: rule_files %v, want [rules.yaml] (the rendered rules)", f, rt.RuleFiles)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
		name := filepath.Base(f)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	run(append([]string{"test", "rules"}, names...)...)

	for _, g := range pr.Spec.Groups {
		for _, ru := range g.Rules {
			if !fires[ru.Alert] {
				t.Errorf("alert %s is never made to fire in %s", ru.Alert, ruleTestsDir)
			}
			if !silent[ru.Alert] {
				t.Errorf("alert %s is never expected silent in %s", ru.Alert, ruleTestsDir)
			}
		}
	}
}
