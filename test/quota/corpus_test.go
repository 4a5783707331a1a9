//go:build apiserver

package quota

import (
	"testing"

	"github.com/dnsguard/dnsguard/test/internal/corpus"
)

// TestCorpusPassesAPIValidation dry-run creates the golden pod of every
// corpus review on the real API server (test/internal/corpus): a patched
// pod must be one the API server accepts, and a pod the webhook leaves alone
// (its golden is the original) must be accepted as it came.
//
// Negative controls: three more nameservers written into
// replicaset-pod-generatename.golden.json and an option without a name into
// alpine-image-musl-warning.golden.json failed both cases ("spec.dnsConfig.
// nameservers: Invalid value: [...]: must not have more than 3 nameservers",
// "spec.dnsConfig.options[4]: Required value: must not be empty"). Its first
// run found what test/curl/lib.jq's regexes had passed: the metrics port
// name "dnsguard-metrics" (16 characters, the limit is 15), and two fixtures
// no API server would accept (a volumeMount without its volume, a mirror pod
// with a service account and no nodeName).
func TestCorpusPassesAPIValidation(t *testing.T) {
	corpus.DryRunGoldens(t, client, "../../webhook/testdata")
}
