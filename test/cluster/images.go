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
// Each node's containerd gets them all.
func (c *Cluster) importImages(n *node) error {
	for _, img := range c.cfg.Images {
		args := []string{"--net=" + n.netns, "--", filepath.Join(c.cfg.Bin, "ctr"), "--address", n.containerdSock(),
			"-n", "k8s.io", "images", "import", img}
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s into %s: %w: %s", img, n.name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
