package main

import (
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
)

// ChartRepository is where users install the chart from
// (helm install oci://ghcr.io/dnsguard/charts/dnsguard).
const ChartRepository = Repository + "/charts/dnsguard"

var pushedDigest = regexp.MustCompile(`(?m)^Digest: (sha256:[0-9a-f]{64})$`)

// signChart pushes the packaged chart into the loopback registry at host,
// signs the manifest helm made, and saves manifest and signature as the OCI
// layout dir. Publishing loads that layout (not helm push again): helm
// stamps every push with its time, so a second push would be another
// digest than the one signed.
func signChart(helm string, cosign Cosign, host, tgz, dir string) error {
	out, err := exec.Command(helm, "push", tgz, "oci://"+host+"/dnsguard/charts", "--plain-http").CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm push %s: %w: %s", tgz, err, out)
	}
	m := pushedDigest.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("helm push printed no digest: %s", out)
	}
	ref := host + "/dnsguard/charts/dnsguard@" + string(m[1])
	slog.Info("signing", "chart", ref, "identity", ChartRepository)
	if err := cosign.Sign(ref, ChartRepository); err != nil {
		return err
	}
	return cosign.Save(ref, dir)
}
