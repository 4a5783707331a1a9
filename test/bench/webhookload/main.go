// Command webhookload measures an admission webhook over real HTTPS.
//
//	webhookload load  --url=https://127.0.0.1:8443/mutate --ca=ca.crt --review=review.json [--pid=PID]
//	webhookload hostile --url=https://127.0.0.1:8443 --ca=ca.crt --review=review.json --pid=PID
//	webhookload probe --url=https://127.0.0.1:8443/healthz --ca=ca.crt (hostile starts it)
//	webhookload floor --listen=127.0.0.1:9443 --tls-cert-file=tls.crt --tls-key-file=tls.key
//
// "load" sends the same AdmissionReview over keep-alive connections (HTTP/1.1
// or HTTP/2) at increasing concurrency for a bounded time each (closed loop:
// every worker sends its next review when the previous answer arrived), then
// at a fixed rate (open loop: latency counts from the scheduled send time, so
// a stalled server cannot hide its queue). It prints one tab-separated line
// per step on stdout and a readable line on stderr. With --pid it also reads
// the server's user+sys CPU ticks from /proc before and after each step, which
// gives CPU time per review, the figure that does not depend on how busy the
// shared machine was.
//
// "floor" is the reference server: a minimal standard-library HTTPS handler
// that decodes the review and its Pod, re-encodes the Pod and answers
// "allowed" with the request's UID. Whatever the real webhook spends above it
// is the cost of its own logic.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: webhookload load|floor|hostile [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = runLoad(os.Args[2:])
	case "floor":
		err = runFloor(os.Args[2:])
	case "hostile":
		err = runHostile(os.Args[2:])
	case "probe":
		err = runProbe(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want load, floor or hostile)", os.Args[1])
	}
	if err != nil {
		slog.Error("webhookload", "err", err)
		os.Exit(1)
	}
}

// loadConfig holds the flags of the load subcommand.
type loadConfig struct {
	url          string
	caFile       string
	reviewFile   string
	label        string
	proto        string
	pid          int
	concurrency  []int
	duration     time.Duration
	warmup       time.Duration
	rate         int
	rateDuration time.Duration
}

func parseLoad(args []string) (loadConfig, error) {
	var c loadConfig
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "https://127.0.0.1:8443/mutate", "webhook URL to POST reviews to")
	fs.StringVar(&c.caFile, "ca", "", "PEM CA bundle that signed the server certificate (required)")
	fs.StringVar(&c.reviewFile, "review", "", "AdmissionReview JSON file to send (required)")
	fs.StringVar(&c.label, "label", "webhook", "name of the server in the output")
	fs.StringVar(&c.proto, "proto", "h2", "h1 (HTTP/1.1 keep-alive) or h2 (HTTP/2, as kube-apiserver uses)")
	fs.IntVar(&c.pid, "pid", 0, "server process ID for CPU ticks per review (0: do not measure)")
	conc := fs.String("concurrency", "1,8,32,128", "comma list of closed-loop worker counts")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "length of each closed-loop step")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured load before the first step (connections, TLS, JIT-free warm caches)")
	fs.IntVar(&c.rate, "rate", 500, "reviews/s of the fixed-rate step (0: skip)")
	fs.DurationVar(&c.rateDuration, "rate-duration", 10*time.Second, "length of the fixed-rate step")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.caFile == "" || c.reviewFile == "" {
		return c, errors.New("--ca and --review are required")
	}
	if c.proto != "h1" && c.proto != "h2" {
		return c, fmt.Errorf("--proto=%q: want h1 or h2", c.proto)
	}
	for _, s := range strings.Split(*conc, ",") {
		if strings.TrimSpace(s) == "" && *conc == "" {
			break // open loop only
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			return c, fmt.Errorf("--concurrency: bad worker count %q", s)
		}
		c.concurrency = append(c.concurrency, n)
	}
	if c.duration <= 0 || c.duration > 5*time.Minute || c.rateDuration > 5*time.Minute {
		return c, errors.New("--duration and --rate-duration must be in (0, 5m]")
	}
	return c, nil
}

// result is one measured step.
type result struct {
	mode      string // "c=N" or "rate=R"
	sent      int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
	cpuTicks  int64 // -1 when not measured
}

func runLoad(args []string) error {
	cfg, err := parseLoad(args)
	if err != nil {
		return err
	}
	review, err := os.ReadFile(cfg.reviewFile)
	if err != nil {
		return fmt.Errorf("read review: %w", err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(review, &ar); err != nil || ar.Request == nil {
		return fmt.Errorf("review %s is not an AdmissionReview with a request: %v", cfg.reviewFile, err)
	}
	uid := []byte(ar.Request.UID)
	client, err := newClient(cfg)
	if err != nil {
		return err
	}
	// One checked round trip first: a benchmark of a server that answers
	// errors or someone else's UID would be meaningless.
	if err := checkOnce(client, cfg.url, review, string(ar.Request.UID), cfg.proto); err != nil {
		return err
	}
	d := &driver{client: client, url: cfg.url, body: review, uid: uid}
	if cfg.warmup > 0 {
		d.closed(8, cfg.warmup)
	}
	fmt.Println("server\tproto\tmode\tsent\terrors\treviews_per_s\tp50_us\tp99_us\tmax_us\tcpu_us_per_review")
	var steps []func() result
	for _, n := range cfg.concurrency {
		steps = append(steps, func() result { return d.closed(n, cfg.duration) })
	}
	if cfg.rate > 0 {
		steps = append(steps, func() result { return d.open(cfg.rate, cfg.rateDuration) })
	}
	for _, step := range steps {
		before := cpuTicks(cfg.pid)
		r := step()
		if after := cpuTicks(cfg.pid); before >= 0 && after >= 0 {
			r.cpuTicks = after - before
		} else {
			r.cpuTicks = -1
		}
		report(cfg, r)
	}
	return nil
}

func newClient(cfg loadConfig) (*http.Client, error) {
	caPEM, err := os.ReadFile(cfg.caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.caFile)
	}
	maxConc := 128 // open loop only: as many connections as the largest closed-loop step
	if len(cfg.concurrency) > 0 {
		maxConc = slices.Max(cfg.concurrency)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        maxConc,
		MaxIdleConnsPerHost: maxConc,
		// Bounded like a real API server's connection pool: without it an
		// open-loop step against a slow server opens a new TLS connection
		// per waiting review, and handshakes then eat the server's core.
		MaxConnsPerHost:   maxConc,
		IdleConnTimeout:   time.Minute,
		ForceAttemptHTTP2: cfg.proto == "h2",
	}
	if cfg.proto == "h1" {
		// A non-nil empty map is how net/http is told not to negotiate h2.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

func checkOnce(client *http.Client, url string, body []byte, uid, proto string) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("first review: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("first review: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("first review: HTTP %d: %.200s", resp.StatusCode, out)
	}
	if want := map[string]int{"h1": 1, "h2": 2}[proto]; resp.ProtoMajor != want {
		return fmt.Errorf("first review: asked for %s, got %s", proto, resp.Proto)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &ar); err != nil {
		return fmt.Errorf("first review: response is not JSON: %w", err)
	}
	if ar.Response == nil || string(ar.Response.UID) != uid || !ar.Response.Allowed {
		return fmt.Errorf("first review: response does not allow UID %s: %.300s", uid, out)
	}
	return nil
}

// driver sends reviews; every answer is checked for status 200 and for the
// request UID, which is cheap enough not to make the client the bottleneck.
type driver struct {
	client *http.Client
	url    string
	body   []byte
	uid    []byte
}

func (d *driver) do(buf *bytes.Buffer) bool {
	req, err := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return false
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK && bytes.Contains(buf.Bytes(), d.uid)
}

// closed runs n workers back to back for dur.
func (d *driver) closed(n int, dur time.Duration) result {
	var mu sync.Mutex
	r := result{mode: fmt.Sprintf("c=%d", n)}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if d.do(&buf) {
					lat = append(lat, time.Since(t0))
				} else {
					errs++
				}
			}
			mu.Lock()
			r.latencies = append(r.latencies, lat...)
			r.errors += errs
			r.sent += len(lat) + errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// open sends rate reviews per second for dur regardless of answers (at most
// 2048 in flight, so a dead server cannot make the client unbounded).
func (d *driver) open(rate int, dur time.Duration) result {
	r := result{mode: fmt.Sprintf("rate=%d", rate)}
	total := int(float64(rate) * dur.Seconds())
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, total)
	ok := make([]bool, total)
	sem := make(chan struct{}, 2048)
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			buf := bufs.Get().(*bytes.Buffer)
			ok[i] = d.do(buf)
			lat[i] = time.Since(at)
			bufs.Put(buf)
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.sent = total
	for i := range total {
		if ok[i] {
			r.latencies = append(r.latencies, lat[i])
		} else {
			r.errors++
		}
	}
	return r
}

// cpuTicks returns utime+stime of pid in clock ticks, or -1 (no pid, or
// it is gone).
func cpuTicks(pid int) int64 {
	s, err := harness.ReadStat(pid)
	if err != nil {
		return -1
	}
	return int64(s.CPUTicks)
}

func report(cfg loadConfig, r result) {
	slices.Sort(r.latencies)
	pct := func(p float64) float64 {
		if len(r.latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(r.latencies)-1))
		return float64(r.latencies[i].Microseconds())
	}
	ok := len(r.latencies)
	rps := float64(ok) / r.elapsed.Seconds()
	cpu := "-"
	if r.cpuTicks >= 0 && ok > 0 {
		cpu = fmt.Sprintf("%.1f", float64(r.cpuTicks)*1e6/harness.ClockTick/float64(ok))
	}
	fmt.Printf("%s\t%s\t%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\n",
		cfg.label, cfg.proto, r.mode, r.sent, r.errors, rps, pct(0.50), pct(0.99), pct(1), cpu)
	fmt.Fprintf(os.Stderr, "%-8s %s %-9s %7.0f reviews/s  p50 %6.0fµs  p99 %6.0fµs  errors %d  cpu/review %sµs\n",
		cfg.label, cfg.proto, r.mode, rps, pct(0.50), pct(0.99), r.errors, cpu)
}

// maxRequestSize bounds a review body like controller-runtime does: etcd's
// 1.5 MiB object limit, times 4 for JSON escaping of a raw object, plus room.
const maxRequestSize = 7 << 20

func runFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9443", "HTTPS address")
	cert := fs.String("tls-cert-file", "", "PEM serving certificate (required)")
	key := fs.String("tls-key-file", "", "PEM key (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("--tls-cert-file and --tls-key-file are required")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", floorMutate)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS(*cert, *key) }()
	slog.Info("floor serving", "listen", *listen)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-sig:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// floorMutate is the least a correct webhook must do: bounded read, content
// type check, decode review and Pod, re-encode, answer with the UID.
func floorMutate(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, "want Content-Type application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestSize+1))
	if err != nil || len(body) == 0 || len(body) > maxRequestSize {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil || ar.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	if err := json.Unmarshal(ar.Request.Object.Raw, &pod); err != nil {
		http.Error(w, "not a Pod", http.StatusBadRequest)
		return
	}
	if _, err := json.Marshal(&pod); err != nil {
		http.Error(w, "re-encode Pod", http.StatusInternalServerError)
		return
	}
	out := admissionv1.AdmissionReview{
		TypeMeta: ar.TypeMeta,
		Response: &admissionv1.AdmissionResponse{UID: ar.Request.UID, Allowed: true},
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}
