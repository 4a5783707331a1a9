package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The node's OCI registry: distribution v3 (bin/registry, from
// hack/tools/registry) on the namespace's loopback, storage in the run
// directory. containerd resolves every name under MirroredRegistries
// through it (registry host configuration, hosts.toml with server = the
// loopback), so the chart's images, ghcr.io/dnsguard/... pinned by digest,
// are pulled from what the suite pushed and nothing is ever asked of the
// real registry. With a second node the registry listens on every address
// of the first node's namespace, and the second node's containerd pulls
// from NodeIP:5000 (routed over the link between the nodes).

// registryConfig is distribution's configuration: plain HTTP on loopback,
// blobs and manifests under the run directory (removed with it), deletes
// allowed so a test can replace a tag it pushed.
func (c *Cluster) registryConfig() string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, c.cfg.path("registry", "storage"), c.registryListen())
}

// registryListen is the registry's listen address: the namespace's
// loopback for one node; every address when the second node pulls too.
func (c *Cluster) registryListen() string {
	if len(c.nodes) > 1 {
		return ":" + RegistryPort
	}
	return RegistryAddr
}

// registryHosts are containerd's registry host files (config_path): one
// directory per mirrored registry, whose only server is the node's
// registry. With server set and no [host] entries, containerd never tries
// the registry's own address.
func (n *node) registryHosts() map[string]string {
	files := map[string]string{}
	for _, name := range MirroredRegistries {
		files[filepath.Join(n.registryHostsDir(), name, "hosts.toml")] = fmt.Sprintf("server = %q\n", "http://"+n.registry)
	}
	return files
}

func (n *node) registryHostsDir() string { return n.path("containerd", "certs.d") }

// startRegistry runs the registry in the node namespace and waits until it
// answers the OCI distribution API's base endpoint.
func (c *Cluster) startRegistry(ctx context.Context) error {
	cfg := c.cfg.path("registry", "config.yml")
	if err := os.MkdirAll(c.cfg.path("registry", "storage"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte(c.registryConfig()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", cfg, err)
	}
	// distribution exports traces over OTLP by default (to localhost:4318,
	// retried in the background); there is no collector.
	env := []string{"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none"}
	if err := c.startProcEnv("registry", env, []string{filepath.Join(c.cfg.Bin, "registry"), "serve", cfg}); err != nil {
		return err
	}
	return c.waitHTTP(ctx, "registry", "http://"+RegistryAddr+"/v2/", 30*time.Second)
}
