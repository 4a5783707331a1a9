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

// createFaultPods creates the two pods of mode (glibc, musl), named with
// the run's ID, waits until they are Ready and checks the nameservers the
// mode promises.
func createFaultPods(ctx context.Context, mode, runID string) ([]fmPod, error) {
	ns, annotation := fmModeNS(mode)
	var pods []fmPod
	for _, libc := range []string{"glibc", "musl"} {
		p := clientSpec(clientImage(libc))
		// Idles for the whole run: numeric lookups ask no DNS server.
		p.Containers[0].Command = []string{"/gailoop", "-n", "3600", "-i", "1000", "-t", "3600", "127.0.0.1"}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fm-" + mode + "-" + libc + "-" + runID, Labels: map[string]string{"dnsguard-faultmatrix": mode}}, Spec: p}
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

// cellRun is one fault's load: n lookups every interval, bounded by limit,
// in procs gailoop processes per client at once (0: one).
type cellRun struct {
	fault    string
	n        int
	interval time.Duration
	limit    time.Duration
	procs    int
	// args are gailoop's name arguments for a pod, client and process: a
	// name of the run's own (fmState.unique), so no cache an earlier cell
	// filled answers.
	args func(p fmPod, client string, proc int) []string
}

// runCells runs r in every client of every pod at once and returns one
// cell each (a client's processes' lookups together).
func runCells(ctx context.Context, r cellRun, pods []fmPod) []faultmatrix.Cell {
	var (
		mu    sync.Mutex
		cells = map[[2]string]*faultmatrix.Cell{}
		wg    sync.WaitGroup
	)
	for _, p := range pods {
		for _, cn := range fmClients {
			cl, _ := lab.ClientNamed(cn)
			if cl.Libc != p.libc {
				continue
			}
			cells[[2]string{p.mode, cn}] = &faultmatrix.Cell{Fault: r.fault, Mode: p.mode, Client: cn, Upstream: -1}
			for k := range max(r.procs, 1) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					argv := []string{"/gailoop", "-n", strconv.Itoa(r.n), "-i", strconv.Itoa(int(r.interval / time.Millisecond)), "-t", strconv.Itoa(int(r.limit / time.Second))}
					if cl.Fork {
						argv = append(argv, "-f")
					}
					argv = append(argv, r.args(p, cn, k)...)
					// The exec gets the gailoop bound plus a minute.
					ectx, cancel := context.WithTimeout(ctx, r.limit+time.Minute)
					defer cancel()
					out, err := execIn(ectx, p.ns, p.name, "app", argv...)
					ls, _ := lab.ParseLookups(out)
					mu.Lock()
					defer mu.Unlock()
					c := cells[[2]string{p.mode, cn}]
					c.Lookups = append(c.Lookups, ls...)
					// gailoop exits 3 at its time limit: a cell that stalled
					// too long to finish, reported with the lookups it did.
					if err != nil && !strings.Contains(err.Error(), "gailoop: time limit") && c.Err == "" {
						c.Err = err.Error()
					}
				}()
			}
		}
	}
	wg.Wait()
	out := make([]faultmatrix.Cell, 0, len(cells))
	for _, c := range cells {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b faultmatrix.Cell) int {
		if d := slices.Index(fmModes, a.Mode) - slices.Index(fmModes, b.Mode); d != 0 {
			return d
		}
		return slices.Index(fmClients, a.Client) - slices.Index(fmClients, b.Client)
	})
	return out
}

// setWindow gives every cell the upstream packets of the window they ran
// in together and the window's lookups (the per-lookup denominator).
func setWindow(cells []faultmatrix.Cell, upstream int) int {
	n := 0
	for _, c := range cells {
		n += len(c.Lookups)
	}
	for i := range cells {
		cells[i].Upstream, cells[i].WindowLookups = upstream, n
	}
	return n
}
