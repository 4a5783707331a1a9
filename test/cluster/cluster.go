package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// Cluster is a running cluster of one or two nodes.
type Cluster struct {
	cfg   Config
	lock  *lock
	state *State
	procs map[string]*proc
	// nodes[0] is the first node, whose namespace also holds the control
	// plane, the registry and the upstream DNS.
	nodes  []*node
	netns  string // /proc/PID/ns/net of the first node's namespace holder
	client kubernetes.Interface
	rest   *rest.Config
	// Timings of Up, for the report.
	Timings []Timing
}

// Timing is how long one step of Up took.
type Timing struct {
	Step string
	Took time.Duration
}

// Up takes the machine lock, cleans up after an earlier run that was killed,
// and starts the cluster. On error everything started so far is torn down.
func Up(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c = &Cluster{cfg: cfg, procs: map[string]*proc{}}
	if c.lock, err = acquire(cfg.StateDir, cfg.Log); err != nil {
		return nil, err
	}
	if prev, err := c.lock.load(); err != nil {
		c.lock.release()
		return nil, err
	} else if prev != nil {
		cfg.Log("cleaning up after an earlier run that did not finish (%s)", prev.RunDir)
		if err := cleanup(prev, cfg.Log); err != nil {
			c.lock.release()
			return nil, fmt.Errorf("clean up earlier run: %w", err)
		}
		if left := Leftovers(prev); len(left) > 0 {
			c.lock.release()
			return nil, fmt.Errorf("earlier run left behind: %s", strings.Join(left, "; "))
		}
		_ = c.lock.clear()
	}
	defer func() {
		if err != nil {
			if derr := c.Down(); derr != nil {
				cfg.Log("teardown after failed start: %v", derr)
			}
		}
	}()
	if c.cfg.RunDir == "" {
		if c.cfg.RunDir, err = os.MkdirTemp("/var/tmp", "dnsguard-cluster."); err != nil {
			return c, err
		}
	} else if err = os.MkdirAll(c.cfg.RunDir, 0o755); err != nil {
		return c, err
	}
	c.nodes = newNodes(&c.cfg)
	c.state = &State{RunDir: c.cfg.RunDir, Started: time.Now().Add(-time.Second), Sysctls: saveSysctls(), Keep: cfg.Keep}
	if err = c.lock.save(c.state); err != nil {
		return c, err
	}
	for _, d := range []string{"logs"} {
		if err = os.MkdirAll(c.cfg.path(d), 0o755); err != nil {
			return c, err
		}
	}
	t0 := time.Now()
	step := func(name string, f func() error) error {
		s := time.Now()
		c.cfg.Log("%s ...", name)
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c.Timings = append(c.Timings, Timing{name, time.Since(s)})
		c.cfg.Log("%s: done in %.1fs", name, time.Since(s).Seconds())
		return nil
	}
	// node marks the steps a ControlPlaneOnly run skips.
	type stepT struct {
		name string
		f    func() error
		node bool
	}
	first := c.nodes[0]
	steps := []stepT{
		{"node network namespace", func() error { return c.startNetns(first) }, false},
		{"PKI and configuration", func() error {
			if err := writePKI(c.cfg.path("pki"), apiServerURL(), c.nodes); err != nil {
				return err
			}
			if err := c.writeUpstreamConfig(); err != nil {
				return err
			}
			for _, n := range c.nodes {
				if err := c.writeNodeConfigs(n); err != nil {
					return err
				}
			}
			return nil
		}, false},
		{"node upstream DNS", func() error { return c.startProc(ctx, "dnsmasq", c.dnsmasqArgs()) }, true},
		{"etcd", func() error {
			if err := c.startProc(ctx, "etcd", c.etcdArgs()); err != nil {
				return err
			}
			return c.waitHTTP(ctx, "etcd", "http://127.0.0.1:2379/health", 60*time.Second)
		}, false},
		{"kube-apiserver", func() error {
			if err := c.startProc(ctx, "kube-apiserver", c.apiserverArgs()); err != nil {
				return err
			}
			return c.waitAPI(ctx, 120*time.Second)
		}, false},
		{"registry (" + RegistryAddr + ")", func() error { return c.startRegistry(ctx) }, true},
		{"controller manager, scheduler, containerd", func() error {
			for name, args := range map[string][]string{
				"kube-controller-manager": c.controllerManagerArgs(),
				"kube-scheduler":          c.schedulerArgs(),
			} {
				if err := c.startProc(ctx, name, args); err != nil {
					return err
				}
			}
			return c.startContainerd(ctx, first)
		}, true},
		{"image import", func() error { return c.importImages(first) }, true},
		{"kubelet and kube-proxy (node Ready)", func() error { return c.startKubelet(ctx, first) }, true},
	}
	if len(c.nodes) > 1 {
		// The second node comes up after the first, so a failure names it.
		second := c.nodes[1]
		steps = append(steps,
			stepT{"second node " + second.name + ": network namespace, link and routes", func() error {
				if err := c.startNetns(second); err != nil {
					return err
				}
				return linkNodes(first, second, c.cfg.DualStack)
			}, true},
			stepT{"second node " + second.name + ": containerd, image import", func() error {
				if err := c.startContainerd(ctx, second); err != nil {
					return err
				}
				return c.importImages(second)
			}, true},
			stepT{"second node " + second.name + ": kubelet and kube-proxy (node Ready)", func() error { return c.startKubelet(ctx, second) }, true},
		)
	}
	steps = append(steps,
		stepT{"kube-proxy in " + string(cfg.ProxyMode) + " mode (/proxyMode, the kubernetes Service's DNAT)", func() error {
			_, err := c.waitKubeProxy(ctx, 60*time.Second)
			return err
		}, true},
		stepT{"CoreDNS (kube-system/kube-dns, 2 replicas, on " + NodeName + ")", func() error {
			if err := c.waitServiceAccount(ctx, "kube-system", 60*time.Second); err != nil {
				return err
			}
			if err := installCoreDNS(ctx, c.client, c.coreDNSImage()); err != nil {
				return err
			}
			return c.waitDeployment(ctx, "kube-system", "coredns", 180*time.Second)
		}, true},
	)
	for _, s := range steps {
		if s.node && cfg.ControlPlaneOnly {
			continue
		}
		if err = step(s.name, s.f); err != nil {
			return c, err
		}
	}
	c.Timings = append(c.Timings, Timing{"cluster up", time.Since(t0)})
	c.cfg.Log("cluster up in %.1fs", time.Since(t0).Seconds())
	return c, nil
}

// coreDNSImage is the CoreDNS reference among the imported images.
func (c *Cluster) coreDNSImage() string {
	if v := os.Getenv("CLUSTER_COREDNS_IMAGE"); v != "" {
		return v
	}
	return "registry.k8s.io/coredns/coredns:v1.15.0"
}

// startNetns starts the holder of the node's network namespace, records
// the namespace in the state file (the first node's as Netns, the others'
// in NodeNetns) and sets it up.
func (c *Cluster) startNetns(n *node) error {
	p, ns, err := netnsHolder(c.cfg.path("logs", n.proc("netns")+".log"))
	if err != nil {
		return err
	}
	c.procs[n.proc("netns")] = p
	n.netns = ns
	c.state.Procs = append(c.state.Procs, p.ref)
	id, err := netnsIdentify(ns)
	if err != nil {
		return fmt.Errorf("%s namespace: %w", n.name, err)
	}
	if n == c.nodes[0] {
		c.netns = ns
		c.state.Netns = id
	} else {
		c.state.NodeNetns = append(c.state.NodeNetns, id)
	}
	if err := c.lock.save(c.state); err != nil {
		return err
	}
	if n == c.nodes[0] {
		return setupNetns(ns, c.cfg.DualStack)
	}
	return nil
}

// startContainerd starts the node's containerd and waits for it.
func (c *Cluster) startContainerd(ctx context.Context, n *node) error {
	if err := c.startProcIn(n, "containerd", nil, c.containerdArgs(n)); err != nil {
		return err
	}
	return c.waitContainerd(ctx, n, 60*time.Second)
}

// startKubelet starts the node's kubelet (in its cgroup root) and
// kube-proxy, and waits until the node is Ready.
func (c *Cluster) startKubelet(ctx context.Context, n *node) error {
	if n.cgroupRoot != "/" {
		c.state.CgroupRoots = append(c.state.CgroupRoots, n.cgroupRoot)
		if err := c.lock.save(c.state); err != nil {
			return err
		}
		if err := makeCgroupRoot(n); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
	}
	if err := c.startProcIn(n, "kubelet", nil, c.kubeletArgs(n)); err != nil {
		return err
	}
	if err := c.startKubeProxy(n); err != nil {
		return err
	}
	return c.waitNodeReady(ctx, n.name, 120*time.Second)
}

// startProc starts a component in the first node's namespace and records
// it in the state file before anything else happens.
func (c *Cluster) startProc(_ context.Context, name string, argv []string) error {
	return c.startProcEnv(name, nil, argv)
}

// startProcEnv is startProc with extra environment.
func (c *Cluster) startProcEnv(name string, env []string, argv []string) error {
	return c.startNamed(name, c.netns, env, argv)
}

// startProcIn starts component comp of node n in n's namespace, named
// n.proc(comp).
func (c *Cluster) startProcIn(n *node, comp string, env []string, argv []string) error {
	return c.startNamed(n.proc(comp), n.netns, env, argv)
}

func (c *Cluster) startNamed(name, netns string, env []string, argv []string) error {
	env = append([]string{"PATH=" + c.cfg.Bin + ":" + os.Getenv("PATH")}, env...)
	p, err := start(name, netns, c.cfg.path("logs", name+".log"), env, argv...)
	if err != nil {
		return err
	}
	c.procs[name] = p
	c.state.Procs = append(c.state.Procs, p.ref)
	return c.lock.save(c.state)
}

// poll calls f until it returns true, the deadline passes, or a component
// exits (then its log tail is part of the error).
func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, f func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		for name, p := range c.procs {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited (%v) while waiting for %s; log tail:\n%s", name, err, what, p.Tail(20))
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := f(cctx)
		cancel()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) waitHTTP(ctx context.Context, what, url string, timeout time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: netnsDial(c.netns)}, Timeout: 3 * time.Second}
	return c.poll(ctx, what, timeout, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	})
}

// RESTConfig is an admin (system:masters) client configuration whose
// connections are made inside the node namespace.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.rest) }

// Client is an admin clientset for the cluster.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Netns is the /proc path of the node's network namespace.
func (c *Cluster) Netns() string { return c.netns }

// Registry is the address of the node's OCI registry (plain HTTP, inside
// the node namespace).
func (c *Cluster) Registry() string { return RegistryAddr }

// ContainerdSock is the first node's containerd socket (for ctr, inside
// its namespace).
func (c *Cluster) ContainerdSock() string { return c.nodes[0].containerdSock() }

// ContainerdSocks are every node's containerd socket, the first node's
// first. A unix socket is reached by its path from any network namespace,
// so ctr needs no nsenter for them.
func (c *Cluster) ContainerdSocks() []string {
	var socks []string
	for _, n := range c.nodes {
		socks = append(socks, n.containerdSock())
	}
	return socks
}

// NodeNames are the cluster's nodes, the first node first.
func (c *Cluster) NodeNames() []string {
	var names []string
	for _, n := range c.nodes {
		names = append(names, n.name)
	}
	return names
}

// RunDir is this run's directory.
func (c *Cluster) RunDir() string { return c.cfg.RunDir }

// AdminKubeconfig is the path of the admin kubeconfig (usable inside the namespace).
func (c *Cluster) AdminKubeconfig() string { return c.cfg.path("pki", "admin.kubeconfig") }

func (c *Cluster) waitAPI(ctx context.Context, timeout time.Duration) error {
	pki := c.cfg.path("pki")
	c.rest = &rest.Config{
		Host: apiServerURL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: pki + "/ca.crt", CertFile: pki + "/admin.crt", KeyFile: pki + "/admin.key",
		},
		Dial:  netnsDial(c.netns),
		QPS:   100,
		Burst: 200,
	}
	var err error
	if c.client, err = kubernetes.NewForConfig(c.rest); err != nil {
		return err
	}
	return c.poll(ctx, "kube-apiserver /readyz", timeout, func(ctx context.Context) (bool, error) {
		b, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok", err
	})
}

func (c *Cluster) waitContainerd(ctx context.Context, n *node, timeout time.Duration) error {
	return c.poll(ctx, n.proc("containerd"), timeout, func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+n.netns, "--", c.cfg.Bin+"/ctr", "--address", n.containerdSock(), "version").CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return true, nil
	})
}

func (c *Cluster) waitNodeReady(ctx context.Context, name string, timeout time.Duration) error {
	return c.poll(ctx, "node "+name+" Ready", timeout, func(ctx context.Context) (bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, fmt.Errorf("node Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return false, errors.New("node has no Ready condition yet")
	})
}

func (c *Cluster) waitServiceAccount(ctx context.Context, ns string, timeout time.Duration) error {
	return c.poll(ctx, ns+"/default ServiceAccount", timeout, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

func (c *Cluster) waitDeployment(ctx context.Context, ns, name string, timeout time.Duration) error {
	return c.poll(ctx, "deployment "+ns+"/"+name, timeout, func(ctx context.Context) (bool, error) {
		d, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return deploymentReady(d), fmt.Errorf("%d/%d replicas ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
	})
}

func deploymentReady(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == want &&
		d.Status.UpdatedReplicas == want && d.Status.Replicas == want
}

// Start runs argv in the background inside the node namespace, with the
// admin kubeconfig in KUBECONFIG and its output in the run's logs/NAME.log.
// It is recorded in the state file like the components, so Down (or the
// next run, after a killed one) stops it; the caller may stop it earlier.
// For processes the API server must reach on the namespace's loopback, such
// as a webhook (test/compat). name must be unique in the run.
func (c *Cluster) Start(name string, argv ...string) (*harness.Proc, error) {
	if _, dup := c.procs[name]; dup {
		return nil, fmt.Errorf("start %s: a process of that name already runs in this cluster", name)
	}
	if err := c.startProcEnv(name, []string{"KUBECONFIG=" + c.AdminKubeconfig()}, argv); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c.procs[name].Proc, nil
}

// Exec runs argv inside the node namespace with the admin kubeconfig in
// KUBECONFIG, attached to this process's stdio; the exit code is returned.
func (c *Cluster) Exec(ctx context.Context, env []string, argv ...string) (int, error) {
	full := append([]string{"--net=" + c.netns, "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), append([]string{"KUBECONFIG=" + c.AdminKubeconfig(), "PATH=" + c.cfg.Bin + ":" + os.Getenv("PATH")}, env...)...)
	// A Ctrl-C reaches the command directly (same process group); the
	// context only ends it when the caller gives up.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// Down stops everything, restores the host and releases the lock. The
// component logs are copied to LogDir first.
func (c *Cluster) Down() error {
	if c.lock == nil {
		return nil
	}
	if c.state == nil {
		c.lock.release()
		c.lock = nil
		return nil
	}
	if c.cfg.LogDir != "" {
		_ = os.RemoveAll(c.cfg.LogDir)
		_ = os.MkdirAll(c.cfg.LogDir, 0o755)
		_ = exec.Command("cp", "-r", c.cfg.path("logs")+"/.", c.cfg.LogDir).Run()
	}
	// Our own children: stop them through their handles so their Wait
	// goroutines reap them (no zombies left for the leftover check).
	c.cfg.Log("stopping the cluster")
	err := cleanup(c.state, c.cfg.Log)
	for _, p := range c.procs {
		_ = p.Stop(5 * time.Second)
	}
	if left := Leftovers(c.state); len(left) > 0 {
		err = errors.Join(err, fmt.Errorf("left behind after teardown: %s", strings.Join(left, "; ")))
	}
	if err == nil {
		_ = c.lock.clear()
	}
	c.lock.release()
	c.lock = nil
	return err
}

// Cleanup tears down what a killed run left, without starting anything.
func Cleanup(stateDir string, logf func(string, ...any)) error {
	l, err := acquire(stateDir, logf)
	if err != nil {
		return err
	}
	defer l.release()
	s, err := l.load()
	if err != nil || s == nil {
		if s == nil && err == nil {
			logf("nothing to clean up")
		}
		return err
	}
	if err := cleanup(s, logf); err != nil {
		return err
	}
	if left := Leftovers(s); len(left) > 0 {
		return fmt.Errorf("still left behind: %s", strings.Join(left, "; "))
	}
	return l.clear()
}
