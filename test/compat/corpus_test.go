//go:build apiserver

package compat

import (
	"testing"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/internal/corpus"
)

// testCorpus dry-run creates every golden pod of webhook/testdata on the
// oldest API server: what the webhook writes must pass v1.29's validation
// too (the check, and its negative controls, are test/quota's
// TestCorpusPassesAPIValidation).
func testCorpus(t *testing.T, c *cluster.Cluster) {
	corpus.DryRunGoldens(t, c.Client(), "../../webhook/testdata")
}
