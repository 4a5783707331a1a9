//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/faultmatrix"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// The fault matrix's clients: one long-running pod per mode and C library,
// created once; every cell is a gailoop run exec'ed into it, so a cell
// starts in a second and the pod's resolv.conf and sidecar are the ones
// the webhook and kubelet gave it.
const (
	nsFaultPlain   = "faultmatrix-plain"
	nsFaultGuarded = "faultmatrix-guarded"
)

// fmClients: per-lookup (a fresh process per lookup, -f) and long-lived,
// for each C library.
var fmClients = []string{"glibc-gai", "glibc-gai-loop", "musl-gai", "musl-gai-fork"}

// fmPod is a client pod of one mode and C library.
type fmPod struct {
	mode, libc, ns, name string
}

// fmModeNS gives a mode's namespace and annotation (node-local pods are
// dnsconfig pods admitted after the node cache was enabled).
func fmModeNS(mode string) (ns, annotation string) {
	switch mode {
	case "off":
		return nsFaultPlain, ""
	case "sidecar":
		return nsFaultGuarded, "sidecar"
	default:
		return nsFaultGuarded, "dnsconfig"
	}
}

// createFaultPods creates the two pods of mode (glibc, musl), waits until
// they are Ready and checks the nameservers the mode promises.
func createFaultPods(ctx context.Context, mode string) ([]fmPod, error) {
	ns, annotation := fmModeNS(mode)
	var pods []fmPod
	for _, libc := range []string{"glibc", "musl"} {
		p := clientSpec(clientImage(libc))
		// Idles for the whole run: numeric lookups ask no DNS server.
		p.Containers[0].Command = []string{"/gailoop", "-n", "3600", "-i", "1000", "-t", "3600", "127.0.0.1"}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fm-" + mode + "-" + libc, Labels: map[string]string{"dnsguard-faultmatrix": mode}}, Spec: p}
		if annotation != "" {
			pod.Annotations = map[string]string{modeAnnotation: annotation}
		}
		created, err := e2e.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return pods, fmt.Errorf("create pod %s/%s: %w", ns, pod.Name, err)
		}
		if err := checkModeSpec(mode, created); err != nil {
			return pods, err
		}
		pods = append(pods, fmPod{mode: mode, libc: libc, ns: ns, name: pod.Name})
	}
	for _, p := range pods {
		err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
			cur, err := e2e.client.CoreV1().Pods(p.ns).Get(ctx, p.name, metav1.GetOptions{})
			return err == nil && podReady(cur), nil
		})
		if err != nil {
			return pods, fmt.Errorf("pod %s/%s not Ready after 120s: %w%s", p.ns, p.name, err, diagnose(ctx, p.ns))
		}
	}
	return pods, nil
}

// checkModeSpec: the stored pod is what its mode says, so no cell measures
// one mode under another's name.
func checkModeSpec(mode string, p *corev1.Pod) error {
	var ns []string
	if p.Spec.DNSConfig != nil {
		ns = p.Spec.DNSConfig.Nameservers
	}
	var ok bool
	switch mode {
	case "off":
		ok = !patched(p) && p.Spec.DNSPolicy == corev1.DNSClusterFirst
	case "dnsconfig":
		ok = p.Spec.DNSPolicy == corev1.DNSNone && slices.Equal(ns, []string{clusterDNSIP})
	case "sidecar":
		ok = len(ns) > 0 && ns[0] == "127.0.0.1" && len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == sidecarName
	case "nodelocal":
		ok = slices.Equal(ns, []string{nodeLocalIP, clusterDNSIP})
	}
	if !ok {
		return fmt.Errorf("pod %s is not a %s pod: dnsPolicy %s, nameservers %v", p.Name, mode, p.Spec.DNSPolicy, ns)
	}
	return nil
}

// cellRun is one fault's load: n lookups every interval, bounded by limit.
type cellRun struct {
	fault    string
	n        int
	interval time.Duration
	limit    time.Duration
	// name of the cell's lookups; each cell has its own, so no cell is
	// answered from a cache another cell filled.
	name func(mode, client string) string
}

// runCells runs r in every client of every pod at once and returns one
// cell each. TODO(issue 19 item 1): a unique name per lookup once gailoop
// has it; until then each cell repeats its own name and caches answer part
// of it, as they would for an application.
func runCells(ctx context.Context, r cellRun, pods []fmPod) []faultmatrix.Cell {
	var (
		mu    sync.Mutex
		cells []faultmatrix.Cell
		wg    sync.WaitGroup
	)
	for _, p := range pods {
		for _, cn := range fmClients {
			cl, _ := lab.ClientNamed(cn)
			if cl.Libc != p.libc {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				argv := []string{"/gailoop", "-n", strconv.Itoa(r.n), "-i", strconv.Itoa(int(r.interval / time.Millisecond)), "-t", strconv.Itoa(int(r.limit / time.Second))}
				if cl.Fork {
					argv = append(argv, "-f")
				}
				argv = append(argv, r.name(p.mode, cn))
				// The exec gets the gailoop bound plus a minute.
				ectx, cancel := context.WithTimeout(ctx, r.limit+time.Minute)
				defer cancel()
				out, err := execIn(ectx, p.ns, p.name, "app", argv...)
				ls, _ := lab.ParseLookups(out)
				c := faultmatrix.Cell{Fault: r.fault, Mode: p.mode, Client: cn, Lookups: ls, Upstream: -1}
				// gailoop exits 3 at its time limit: a cell that stalled
				// too long to finish, reported with the lookups it did.
				if err != nil && !strings.Contains(err.Error(), "gailoop: time limit") {
					c.Err = err.Error()
				}
				mu.Lock()
				cells = append(cells, c)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(cells, func(a, b faultmatrix.Cell) int {
		if d := slices.Index(fmModes, a.Mode) - slices.Index(fmModes, b.Mode); d != 0 {
			return d
		}
		return slices.Index(fmClients, a.Client) - slices.Index(fmClients, b.Client)
	})
	return cells
}
