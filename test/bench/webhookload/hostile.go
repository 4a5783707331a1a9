package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// runHostile plays a hostile tenant against a webhook (issue 14): many
// concurrent maximum-size reviews plus connections that send headers and a
// little body and then stall, while a probe process (see runProbe) keeps GETting /healthz and
// another keeps sending ordinary reviews. It samples the server's RSS from
// /proc throughout and prints one TSV line: what was shed, what was served,
// how slow /healthz got and the peak RSS.
func runHostile(args []string) error {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	base := fs.String("url", "https://127.0.0.1:8443", "webhook base URL (https)")
	caFile := fs.String("ca", "", "PEM CA bundle (required)")
	reviewFile := fs.String("review", "", "ordinary AdmissionReview JSON (required)")
	label := fs.String("label", "webhook", "name of the server in the output")
	pid := fs.Int("pid", 0, "server PID whose RSS is sampled (0: none)")
	big := fs.Int("big", 64, "concurrent senders of large reviews")
	bigBytes := fs.Int("big-bytes", 3<<20-4096, "size of each large review")
	stalled := fs.Int("stalled", 128, "connections that send headers and 4 KiB of a large body, then stall")
	dur := fs.Duration("duration", 10*time.Second, "length of the attack")
	healthURL := fs.String("healthz-url", "", "URL probed during the attack (default: --url + /healthz; e.g. the plain-HTTP metrics listener)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caFile == "" || *reviewFile == "" {
		return errors.New("--ca and --review are required")
	}
	if *dur <= 0 || *dur > 2*time.Minute || *big > 1024 || *stalled > 4096 {
		return errors.New("--duration must be in (0, 2m], --big <= 1024, --stalled <= 4096")
	}
	normal, err := os.ReadFile(*reviewFile)
	if err != nil {
		return err
	}
	large, err := padReview(normal, *bigBytes)
	if err != nil {
		return err
	}
	cfg := loadConfig{caFile: *caFile, proto: "h1", concurrency: []int{*big + 8}}
	client, err := newClient(cfg)
	if err != nil {
		return err
	}
	client.Timeout = 30 * time.Second
	tlsConf := client.Transport.(*http.Transport).TLSClientConfig
	u, err := url.Parse(*base)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var wg sync.WaitGroup

	// RSS sampler.
	var peakKiB atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if m, err := harness.ReadMem(*pid); err == nil && m.RSS > peakKiB.Load() {
				peakKiB.Store(m.RSS)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Stalled connections: headers announcing a large body, 4 KiB of it,
	// then nothing until the end (or until the server cuts them off).
	var stalledCut atomic.Int64
	for range *stalled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := tls.Dialer{Config: tlsConf}
			c, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /mutate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.Host, len(large))
			_, _ = c.Write(large[:4096])
			go func() { <-ctx.Done(); c.Close() }()
			if _, err := bufio.NewReader(c).ReadByte(); err == nil || ctx.Err() == nil {
				stalledCut.Add(1) // the server answered or closed before the end
			}
		}()
	}

	// Large reviews, back to back.
	var codes sync.Map // status -> *atomic.Int64
	count := func(code int) {
		v, _ := codes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	post := func(body []byte) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, *base+"/mutate", bytes.NewReader(body))
		if err != nil {
			return -1
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range *big {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if c := post(large); ctx.Err() == nil {
					count(c)
				}
			}
		}()
	}

	hurl := *healthURL
	if hurl == "" {
		hurl = *base + "/healthz"
	}
	// /healthz is probed from a process of its own, like the kubelet, and
	// like it on a new connection each time: probing from this process
	// would measure how long its own goroutine waits behind the 64
	// senders on the client's core, not how fast the server answers.
	probe, err := startProbe(hurl, *caFile, *dur)
	if err != nil {
		return err
	}
	// Ordinary reviews on their own client (an API server does not share
	// the attacker's connections).
	var normalSent, normalOK atomic.Int64
	nclient, err := newClient(loadConfig{caFile: *caFile, proto: "h1", concurrency: []int{2}})
	if err != nil {
		return err
	}
	nclient.Timeout = 5 * time.Second
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *base+"/mutate", bytes.NewReader(normal))
			req.Header.Set("Content-Type", "application/json")
			resp, err := nclient.Do(req)
			if ctx.Err() != nil {
				return
			}
			normalSent.Add(1)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					normalOK.Add(1)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	health, err := probe.result()
	if err != nil {
		return err
	}

	get := func(code int) int64 {
		if v, ok := codes.Load(code); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	var bigTotal int64
	codes.Range(func(_, v any) bool { bigTotal += v.(*atomic.Int64).Load(); return true })
	end, _ := harness.ReadMem(*pid) // zero without --pid
	hwm := end.HWM
	fmt.Println("server\tbig\tbig_bytes\tstalled\tbig_sent\tbig_200\tbig_429\tbig_other\tnormal_sent\tnormal_200\thealthz_sent\thealthz_fail\thealthz_max_ms\tpeak_rss_kib\thwm_kib")
	fmt.Printf("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", *label, *big, len(large), *stalled,
		bigTotal, get(200), get(429), bigTotal-get(200)-get(429), normalSent.Load(), normalOK.Load(),
		health.sent, health.failed, health.maxMS, peakKiB.Load(), hwm)
	fmt.Fprintf(os.Stderr, "%s hostile: %d×%d B + %d stalled: large 200=%d 429=%d other=%d; ordinary %d/%d OK; /healthz max %d ms, %d/%d failed; peak RSS %.1f MiB (VmHWM %.1f MiB)\n",
		*label, *big, len(large), *stalled, get(200), get(429), bigTotal-get(200)-get(429), normalOK.Load(), normalSent.Load(),
		health.maxMS, health.failed, health.sent, float64(peakKiB.Load())/1024, float64(hwm)/1024)
	return nil
}

// padReview returns review with an annotation padding it to size bytes.
func padReview(review []byte, size int) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(review, &doc); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	req, _ := doc["request"].(map[string]any)
	obj, _ := req["object"].(map[string]any)
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return nil, errors.New("review has no request.object.metadata")
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann["example.com/padding"] = ""
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if pad := size - len(b); pad > 0 {
		ann["example.com/padding"] = strings.Repeat("x", pad)
		return json.Marshal(doc)
	}
	return b, nil
}

// probeResult is what the probe process saw.
type probeResult struct{ sent, failed, maxMS int64 }

// probeProc is a running "webhookload probe".
type probeProc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startProbe runs "webhookload probe" (this binary) for dur.
func startProbe(url, caFile string, dur time.Duration) (*probeProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	p := &probeProc{}
	// Not CommandContext: the probe stops by itself after dur and must
	// report what it saw rather than be killed at the deadline.
	p.cmd = exec.Command(self, "probe", "--url="+url, "--ca="+caFile, "--duration="+dur.String())
	p.cmd.Stdout, p.cmd.Stderr = &p.out, os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return p, nil
}

func (p *probeProc) result() (probeResult, error) {
	var r probeResult
	if err := p.cmd.Wait(); err != nil {
		return r, fmt.Errorf("probe process: %w", err)
	}
	if _, err := fmt.Sscan(p.out.String(), &r.sent, &r.failed, &r.maxMS); err != nil {
		return r, fmt.Errorf("probe process output %q: %w", p.out.String(), err)
	}
	return r, nil
}

// runProbe is a kubelet-like HTTPS prober: GET url every interval on a new
// connection (the kubelet does not keep probe connections alive), each
// with a 1 s timeout; it prints "sent failed max_ms" when dur is over.
func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET (required)")
	caFile := fs.String("ca", "", "PEM CA bundle (required)")
	dur := fs.Duration("duration", 10*time.Second, "how long to probe")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between probes")
	timeout := fs.Duration("timeout", time.Second, "timeout of one probe")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *caFile == "" || *dur <= 0 || *dur > 2*time.Minute {
		return errors.New("--url and --ca are required, --duration in (0, 2m]")
	}
	client, err := newClient(loadConfig{caFile: *caFile, proto: "h1", concurrency: []int{1}})
	if err != nil {
		return err
	}
	client.Transport.(*http.Transport).DisableKeepAlives = true
	client.Timeout = *timeout
	var sent, failed, maxMS int64
	end := time.Now().Add(*dur)
	for time.Now().Before(end) {
		t0 := time.Now()
		resp, err := client.Get(*url)
		el := time.Since(t0)
		sent++
		if err != nil {
			failed++
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed++
			}
		}
		maxMS = max(maxMS, el.Milliseconds())
		time.Sleep(*interval)
	}
	fmt.Println(sent, failed, maxMS)
	return nil
}
