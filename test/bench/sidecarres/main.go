// Command sidecarres measures the CPU the injected resolver sidecar needs, to
// justify its default CPU request and limit (docs/sidecar-resources.md; the
// memory figures come from a real pod, test/e2e TestSidecarResources):
// bin/resolver, started with the sidecar's arguments in front of a local
// dnsmasq on loopback, is put into a cgroup v1 cpu controller created
// for this run under /sys/fs/cgroup/cpu with cpu.cfs_quota_us set to each
// candidate limit (100 ms period, as the kubelet sets it), and bursts of
// concurrent cache-miss lookups measure the lookup latency (p50, p99, max)
// and how often CFS throttled it; the cgroup is removed afterwards (the
// resolver is moved back first), also on error or Ctrl-C.
//
// Usage (as root, see hack/sidecar-resources.sh):
//
//	sidecarres --resolver=bin/resolver --limits=unlimited,1000m,500m,200m,100m,50m
//
// Every load loop is bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

type options struct {
	resolver, dnsmasq string
	addr, upstream    string
	port              int
	limits            []string
	bursts, burstSize int
	burstGap          time.Duration
	cgroupRoot        string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sidecarres: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	var limits string
	flag.StringVar(&o.resolver, "resolver", "bin/resolver", "resolver binary under test")
	flag.StringVar(&o.dnsmasq, "dnsmasq", "dnsmasq", "dnsmasq binary (the upstream)")
	flag.StringVar(&o.addr, "addr", "127.53.2.1", "loopback address the resolver listens on")
	flag.StringVar(&o.upstream, "upstream", "127.53.2.10", "loopback address dnsmasq listens on")
	flag.IntVar(&o.port, "port", 10253, "DNS port of both")
	flag.StringVar(&limits, "limits", "unlimited,1000m,500m,250m,200m,100m,50m", "CPU limits to measure bursts at (millicores, or unlimited)")
	flag.IntVar(&o.bursts, "bursts", 40, "bursts per limit (the first is a warm-up and not counted)")
	flag.IntVar(&o.burstSize, "burst-size", 200, "concurrent cache-miss lookups per burst")
	flag.DurationVar(&o.burstGap, "burst-gap", 300*time.Millisecond, "pause between bursts (plus up to 100 ms of jitter, so bursts start anywhere in the CFS period)")
	flag.StringVar(&o.cgroupRoot, "cgroup-root", "/sys/fs/cgroup/cpu", "cgroup v1 cpu controller mount")
	flag.Parse()
	o.limits = strings.Split(limits, ",")
	if o.bursts < 2 || o.bursts > 1000 || o.burstSize < 1 || o.burstSize > 5000 {
		return errors.New("--bursts must be 2..1000 and --burst-size 1..5000")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "dnsguard-sidecarres.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// dnsmasq answers every name under bench.example itself (no cache, no
	// further upstream): the resolver forwards each unique name to it.
	up, err := harness.Start("dnsmasq", harness.Options{Log: filepath.Join(work, "dnsmasq.log")},
		o.dnsmasq, "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
		"--listen-address="+o.upstream, "--bind-interfaces", "--port="+strconv.Itoa(o.port),
		"--address=/bench.example/198.51.100.7", "--cache-size=0", "--dns-forward-max=1000", "--log-facility=-")
	if err != nil {
		return err
	}
	defer func() { _ = up.Stop(5 * time.Second) }()
	if err := waitDNS(ctx, net.JoinHostPort(o.upstream, strconv.Itoa(o.port))); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}

	// The resolver with the sidecar's own arguments (webhook/sidecar.go).
	addr := net.JoinHostPort(o.addr, strconv.Itoa(o.port))
	res, err := harness.Start("resolver", harness.Options{Log: filepath.Join(work, "resolver.log")},
		o.resolver, "--listen="+addr, "--upstream="+net.JoinHostPort(o.upstream, strconv.Itoa(o.port)),
		"--health-listen="+net.JoinHostPort(o.addr, "18253"), "--log-level=warn")
	if err != nil {
		return err
	}
	defer func() { _ = res.Stop(5 * time.Second) }()
	if err := waitDNS(ctx, addr); err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	pid := res.PID()
	fmt.Printf("Measured %s (%d CPUs, load %s).\n\n", time.Now().UTC().Format(time.RFC3339), numCPU(), loadavg())
	fmt.Printf("resolver: %s --listen=%s --upstream=%s:%d (pid %d); upstream: dnsmasq %s\n\n", o.resolver, addr, o.upstream, o.port, pid, o.upstream)

	if err := bursts(ctx, o, addr, pid); err != nil {
		return err
	}
	if b, _ := os.ReadFile(filepath.Join(work, "resolver.log")); len(b) > 0 {
		fmt.Printf("\nresolver log (warnings):\n%s\n", harness.LastLines(string(b), 10))
	}
	return nil
}

// bursts measures lookup latency under each CPU limit.
func bursts(ctx context.Context, o options, addr string, pid int) error {
	orig, err := cpuCgroupOf(pid)
	if err != nil {
		return err
	}
	fmt.Printf("Bursts of %d concurrent cache-miss lookups, %d bursts per limit (first one not counted), %s apart plus 0-100 ms jitter; cgroup v1 %s/dnsguard-sidecarres-%d, cpu.cfs_period_us=100000\n\n", o.burstSize, o.bursts, o.burstGap, o.cgroupRoot, pid)
	fmt.Println("| CPU limit | cfs_quota_us | lookups | p50 ms | p99 ms | max ms | failed | periods throttled / total | throttled time ms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	seq := 0
	var unthrottled, throttled []string // limits in the order measured
	for _, lim := range o.limits {
		quota := int64(-1)
		if lim != "unlimited" {
			m, err := strconv.ParseInt(strings.TrimSuffix(lim, "m"), 10, 64)
			if err != nil || !strings.HasSuffix(lim, "m") || m <= 0 {
				return fmt.Errorf("limit %q: want millicores like 100m, or unlimited", lim)
			}
			quota = m * 100 // 100 ms period: 1000m = 100000 us
		}
		dir := filepath.Join(o.cgroupRoot, fmt.Sprintf("dnsguard-sidecarres-%d", pid))
		lat, failed, stat, err := func() ([]time.Duration, int, map[string]int64, error) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, 0, nil, fmt.Errorf("create cgroup: %w", err)
			}
			defer func() {
				// Move the resolver back before removing the cgroup: a
				// cgroup with tasks cannot be removed.
				_ = os.WriteFile(filepath.Join(o.cgroupRoot, orig, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
				if err := os.Remove(dir); err != nil {
					fmt.Fprintf(os.Stderr, "sidecarres: remove cgroup %s: %v\n", dir, err)
				}
			}()
			if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte("100000"), 0o644); err != nil {
				return nil, 0, nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.FormatInt(quota, 10)), 0o644); err != nil {
				return nil, 0, nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
				return nil, 0, nil, fmt.Errorf("move resolver into the cgroup: %w", err)
			}
			before := cpuStat(dir)
			var all []time.Duration
			failed := 0
			for b := range o.bursts {
				if ctx.Err() != nil {
					return nil, 0, nil, ctx.Err()
				}
				seq++
				l, f := burst(addr, o.burstSize, seq)
				if b > 0 {
					all = append(all, l...)
					failed += f
				}
				time.Sleep(o.burstGap + time.Duration(rand.IntN(100))*time.Millisecond)
			}
			after := cpuStat(dir)
			for k := range after {
				after[k] -= before[k]
			}
			return all, failed, after, nil
		}()
		if err != nil {
			return err
		}
		slices.Sort(lat)
		fmt.Printf("| %s | %d | %d | %.2f | %.2f | %.2f | %d | %d / %d | %.0f |\n", lim, quota, len(lat),
			ms(pct(lat, 50)), ms(pct(lat, 99)), ms(pct(lat, 100)), failed, stat["nr_throttled"], stat["nr_periods"], float64(stat["throttled_time"])/1e6)
		if stat["nr_throttled"] > 0 {
			throttled = append(throttled, lim)
		} else {
			unthrottled = append(unthrottled, lim)
		}
		fmt.Fprintf(os.Stderr, "RESULT limit=%s p50_ms=%.2f p99_ms=%.2f max_ms=%.2f failed=%d throttled=%d/%d\n", lim,
			ms(pct(lat, 50)), ms(pct(lat, 99)), ms(pct(lat, 100)), failed, stat["nr_throttled"], stat["nr_periods"])
	}
	fmt.Printf("\nNo CFS period throttled at: %s. Throttled at: %s.\n", list(unthrottled), list(throttled))
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// burst sends n cache-miss lookups at once, each on its own socket, and
// returns their latencies and the number that failed (2 s timeout).
func burst(addr string, n, seq int) ([]time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			m := new(dns.Msg).SetQuestion(fmt.Sprintf("b%d-%d.burst.bench.example.", seq, i), dns.TypeA)
			start.Wait()
			t0 := time.Now()
			r, _, err := c.Exchange(m, addr)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				failed++
				return
			}
			lat = append(lat, d)
		}()
	}
	start.Done()
	wg.Wait()
	return lat, failed
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cpuStat(dir string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] = n
		}
	}
	return out
}

// cpuCgroupOf returns pid's cgroup path in the v1 cpu hierarchy.
func cpuCgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "cpu") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("pid %d is in no cgroup v1 cpu hierarchy (cgroup v2 only?)", pid)
}

func waitDNS(ctx context.Context, addr string) error {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	for range 100 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r, _, err := c.Exchange(new(dns.Msg).SetQuestion("ready.bench.example.", dns.TypeA), addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s after 10 s", addr)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
