//go:build chart

package chart

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestArtifactHubMetadata: the Artifact Hub metadata the tree's Chart.yaml
// carries parses (artifacthub.io/images and artifacthub.io/changes are
// written by make release into the packaged chart; the release test checks
// them there).
func TestArtifactHubMetadata(t *testing.T) {
	raw, err := os.ReadFile(chartRel + "/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		Icon        string            `json:"icon"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	// The license annotation names the LICENSE file's license (negative
	// control: an annotation of MIT, or none, fails here).
	license, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatalf("LICENSE: %v", err)
	}
	if got := chart.Annotations["artifacthub.io/license"]; got != "Apache-2.0" ||
		!bytes.Contains(license, []byte("Apache License")) || !bytes.Contains(license, []byte("Version 2.0, January 2004")) {
		t.Errorf("artifacthub.io/license %q: want Apache-2.0, the license of LICENSE", got)
	}
	var links []struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	if err := yaml.UnmarshalStrict([]byte(chart.Annotations["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
		t.Errorf("artifacthub.io/links %q: %v", chart.Annotations["artifacthub.io/links"], err)
	}
	for _, l := range links {
		if l.Name == "" || !strings.HasPrefix(l.URL, "https://") {
			t.Errorf("link %+v: want a name and an https URL", l)
		}
	}
	// Artifact Hub takes no data: URL; the icon is a file of this
	// repository, served from its main branch.
	const prefix = "https://raw.githubusercontent.com/dnsguard/dnsguard/main/"
	if !strings.HasPrefix(chart.Icon, prefix) {
		t.Errorf("icon %q: want a file of the repository under %s", chart.Icon, prefix)
	} else if _, err := os.Stat("../../" + strings.TrimPrefix(chart.Icon, prefix)); err != nil {
		t.Errorf("icon %q: %v", chart.Icon, err)
	}
}
