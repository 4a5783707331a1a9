package cluster

import (
	"fmt"
	"os"
	"strings"
)

// hostSysctls are the global kernel settings kubelet rewrites when it starts
// (pkg/kubelet/cm setupKernelTunables) and kube-proxy may touch. They are
// machine-wide, not per network namespace, so they are saved before the node
// starts and written back afterwards.
var hostSysctls = []string{
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
	"net.netfilter.nf_conntrack_max",
}

func sysctlPath(name string) string { return "/proc/sys/" + strings.ReplaceAll(name, ".", "/") }

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("write %s=%s: %w", name, value, err)
	}
	return nil
}

// saveSysctls reads the current values of hostSysctls; settings the kernel
// does not have are skipped.
func saveSysctls() map[string]string {
	m := map[string]string{}
	for _, n := range hostSysctls {
		if v, err := readSysctl(n); err == nil {
			m[n] = v
		}
	}
	return m
}

// restoreSysctls writes saved values back, reporting what it changed.
func restoreSysctls(saved map[string]string, logf func(string, ...any)) error {
	var errs []string
	for n, v := range saved {
		cur, err := readSysctl(n)
		if err != nil || cur == v {
			continue
		}
		if err := writeSysctl(n, v); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		logf("restored %s = %s (was %s)", n, v, cur)
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore sysctls: %s", strings.Join(errs, "; "))
	}
	return nil
}
