package cluster

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// importImages loads OCI/docker-archive tarballs into containerd's k8s.io
// namespace, where the CRI plugin (and so kubelet) finds them; pods then use
// imagePullPolicy Never or IfNotPresent with a non-latest tag.
func (c *Cluster) importImages(netns string) error {
	for _, img := range c.cfg.Images {
		args := []string{"--net=" + netns, "--", filepath.Join(c.cfg.Bin, "ctr"), "--address", c.containerdSock(),
			"-n", "k8s.io", "images", "import", img}
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s: %w: %s", img, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
