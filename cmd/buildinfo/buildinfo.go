// Package buildinfo says which release a binary is: the version and commit
// `make release` stamps into it (hack/imagebuild, -ldflags -X), for
// --version, the dnsguard_build_info metric and the webhook's default
// sidecar image. A build outside a release says "dev" and the commit go
// build recorded, if any.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by make release: -X github.com/dnsguard/dnsguard/cmd/buildinfo.Version=0.2.0
// and .Revision=<commit>.
var (
	Version  = "dev"
	Revision = ""
)

// Commit is Revision, else the VCS revision go build recorded (a build in a
// clone without -buildvcs=false), else "unknown".
func Commit() string {
	if Revision != "" {
		return Revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// Released reports whether this binary was built by make release.
func Released() bool { return Version != "dev" }

// String is the --version line of the command name.
func String(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", name, Version, Commit(), runtime.Version())
}

// Metric names the build info gauge, always 1; Labels are its label
// names and values. The webhook and the certificate controller register it
// with client_golang, the resolver writes it in its own exposition (it
// keeps client_golang out of the sidecar), so this package imports neither.
const (
	Metric = "dnsguard_build_info"
	Help   = "Always 1; the labels say which release and commit the binary was built from."
)

// Labels returns the label names and values of Metric for component.
func Labels(component string) (names, values []string) {
	return []string{"component", "version", "revision", "goversion"},
		[]string{component, Version, Commit(), runtime.Version()}
}
