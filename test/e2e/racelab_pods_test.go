//go:build e2e

package e2e

// The race lab's client pods: creation, drop rules as soon as a pod has
// its IP, bounded wait, logs.

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// clientPod runs gailoop once in a pod of its own (restartPolicy Never).
func clientPod(name, image string, annotation string, gailoop ...string) *corev1.Pod {
	spec := clientSpec(image)
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.TerminationGracePeriodSeconds = ptr[int64](2)
	spec.Containers[0].Command = append([]string{"/gailoop"}, gailoop...)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if annotation != "" {
		p.Annotations = map[string]string{modeAnnotation: annotation}
	}
	return p
}

func deletePod(ns, name string) {
	_ = e2e.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)})
}

// holdMS is how long a client pod's init container waits before the app
// starts: the harness adds the pod's drop rule once the pod has an IP, which
// kubelet reports as the sandbox comes up, well before that.
const holdMS = 4000

// podJob is one client pod of a row (or of the probe) and what it measured.
type podJob struct {
	client, image string
	// ns, annotation (the dnsguard.io/mode value, "" for none) and prefix
	// (of the pod's name and its dnsguard-racelab label) place the pod.
	ns, annotation, prefix string
	args                   []string // gailoop's
	n                      int
	name                   string // the pod's
	created                *corev1.Pod
	ruled                  bool
	done                   bool
	phase                  corev1.PodPhase
	log                    string
	lookups                []lab.Lookup
	collisions             int
	drops                  int
	err                    error
	// block: a negative control's address the pod's packets to are dropped.
	block   string
	blocked int
	// prepare turns the client pod into the one to create (nil: as it is).
	prepare func(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error)
	// scrape: read the sidecar's counters once the app printed its n
	// lookups (it lingers after them).
	scrape      bool
	counters    *lab.ResolverCounters
	countersErr error
	lastLogRead time.Time
}

// runJobs creates the pods of jobs side by side, adds each pod's drop rule
// (emulate; rule i for jobs[i]) as soon as it has an IP, and waits
// (bounded) until all have finished; then it reads their logs and counters.
func (c *clusterLab) runJobs(ctx context.Context, t *testing.T, jobs []*podJob, emulate bool) {
	t.Helper()
	maxN := 0
	for _, j := range jobs {
		maxN = max(maxN, j.n)
		p := clientPod(j.prefix+"-"+j.client, j.image, j.annotation, j.args...)
		if emulate {
			hold := p.Spec.Containers[0]
			hold.Name = "hold"
			// A numeric address: getaddrinfo answers it without any query.
			hold.Command = []string{"/gailoop", "-n", "2", "-i", strconv.Itoa(holdMS), "-t", "30", "127.0.0.1"}
			p.Spec.InitContainers = []corev1.Container{hold}
		}
		p.Labels = map[string]string{"dnsguard-racelab": j.prefix}
		j.name = p.Name
		if j.prepare != nil {
			var err error
			if p, err = j.prepare(ctx, p); err != nil {
				j.err, j.done = err, true
				continue
			}
		}
		created, err := e2e.client.CoreV1().Pods(j.ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			j.err = fmt.Errorf("create pod %s/%s: %w", j.ns, p.Name, err)
			j.done = true
			continue
		}
		j.created = created
	}
	// gailoop stops itself after RowLimit; the pod gets a minute more for
	// start and stop.
	limit := time.Duration(lab.RowLimit(maxN)+60) * time.Second
	err := poll(ctx, limit, func(ctx context.Context) (bool, error) {
		all := true
		for i, j := range jobs {
			if j.done {
				continue
			}
			cur, err := e2e.client.CoreV1().Pods(j.ns).Get(ctx, j.name, metav1.GetOptions{})
			if err != nil {
				all = false
				continue
			}
			if emulate && !j.ruled && cur.Status.PodIP != "" {
				if err := c.l.Emulation.AddClient(ctx, i, cur.Status.PodIP); err != nil {
					j.err, j.done = err, true
					continue
				}
				if j.block != "" {
					if err := c.l.Emulation.Block(ctx, i, cur.Status.PodIP, j.block); err != nil {
						j.err, j.done = err, true
						continue
					}
				}
				j.ruled = true
				// The app must not have started before its rule existed.
				if after, err := e2e.client.CoreV1().Pods(j.ns).Get(ctx, j.name, metav1.GetOptions{}); err == nil {
					for _, cs := range after.Status.ContainerStatuses {
						if cs.Name == "app" && (cs.State.Running != nil || cs.State.Terminated != nil) {
							j.err = fmt.Errorf("pod %s: the app started before its drop rule was added (hold %d ms too short?)", j.name, holdMS)
						}
					}
				}
			}
			j.phase = cur.Status.Phase
			if j.scrape && j.counters == nil && j.phase == corev1.PodRunning && time.Since(j.lastLogRead) > time.Second {
				j.lastLogRead = time.Now()
				c.scrapeWhenDone(ctx, j.ns, j, cur)
			}
			if j.phase == corev1.PodSucceeded || j.phase == corev1.PodFailed {
				j.done = true
				if emulate && !j.ruled && j.err == nil {
					j.err = fmt.Errorf("pod %s finished before it had an IP in its status", j.name)
				}
				continue
			}
			all = false
		}
		return all, nil
	})
	for i, j := range jobs {
		if j.created == nil {
			continue
		}
		if !j.done && j.err == nil {
			j.err = fmt.Errorf("pod %s/%s not finished after %s (phase %s): %v%s", j.ns, j.name, limit, j.phase, err, diagnose(ctx, j.ns))
		}
		b, lerr := e2e.client.CoreV1().Pods(j.ns).GetLogs(j.name, &corev1.PodLogOptions{Container: "app"}).Do(ctx).Raw()
		if lerr != nil && j.err == nil {
			j.err = fmt.Errorf("logs of %s/%s: %w", j.ns, j.name, lerr)
		}
		j.log = string(b)
		j.lookups, _ = lab.ParseLookups(j.log)
		if j.phase == corev1.PodFailed && j.err == nil {
			j.err = fmt.Errorf("pod %s/%s failed%s\n%s", j.ns, j.name, diagnose(ctx, j.ns), b)
		}
		if emulate && j.ruled {
			if j.collisions, j.drops, err = c.l.Emulation.Counters(ctx, i); err != nil && j.err == nil {
				j.err = err
			}
			if j.block != "" {
				if j.blocked, err = c.l.Emulation.Blocked(ctx, i); err != nil && j.err == nil {
					j.err = err
				}
			}
		}
		if j.scrape && j.counters == nil && j.countersErr == nil {
			j.countersErr = fmt.Errorf("pod %s ended before its app had printed %d lookups and the harness read the counters (linger %d ms)", j.name, j.n, lingerMS)
		}
	}
}
