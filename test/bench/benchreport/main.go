// Command benchreport turns the raw measurements of hack/bench.sh into
// docs/benchmarks.md: the machine, the side-by-side tables with ratios to the
// peers, the targets of issues 3 and 7 with met / not met, and the commands.
//
// Inputs (all written by hack/bench.sh): --meta (key=value lines), --resolver
// (TSV, one row per server and workload, dnsperf figures plus CPU ticks and
// the memory columns of test/bench/memsample, idle and at the end of the
// workload), --webhook (TSV rows of test/bench/webhookload), --commands (the
// command lines that were run).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	meta := flag.String("meta", "", "key=value file describing the machine and the run")
	resolver := flag.String("resolver", "", "resolver measurements (TSV with header)")
	webhook := flag.String("webhook", "", "webhook measurements (TSV without header)")
	commands := flag.String("commands", "", "commands that were run, one a line")
	tcp := flag.String("tcp", "", "TCP-upstream TIME-WAIT measurement (TSV with header; optional, may be missing)")
	hostile := flag.String("hostile", "", "webhookload hostile measurements (TSV with header; optional)")
	flag.Parse()
	hostileFile = *hostile
	if err := run(os.Stdout, *meta, *resolver, *webhook, *commands, *tcp); err != nil {
		slog.Error("benchreport", "err", err)
		os.Exit(1)
	}
}

// hostileFile is the optional --hostile TSV (kept out of run's signature so
// existing callers and tests stay as they are).
var hostileFile string

func run(w io.Writer, metaFile, resolverFile, webhookFile, commandsFile, tcpFile string) error {
	if metaFile == "" || resolverFile == "" || webhookFile == "" || commandsFile == "" {
		return errors.New("--meta, --resolver, --webhook and --commands are required")
	}
	meta, err := readMeta(metaFile)
	if err != nil {
		return err
	}
	res, err := readTSV(resolverFile, true)
	if err != nil {
		return err
	}
	wh, err := readTSV(webhookFile, false)
	if err != nil {
		return err
	}
	cmds, err := os.ReadFile(commandsFile)
	if err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	r := &report{w: w, meta: meta}
	if tcpFile != "" {
		if _, err := os.Stat(tcpFile); err == nil {
			rows, err := readTSV(tcpFile, true)
			if err != nil {
				return err
			}
			if len(rows) > 0 {
				r.tcp = rows[0]
			}
		}
	}
	if hostileFile != "" {
		if r.hostile, err = readTSV(hostileFile, true); err != nil {
			return err
		}
	}
	for _, row := range res {
		s, err := parseServerRow(row)
		if err != nil {
			return err
		}
		r.servers = append(r.servers, s)
	}
	for _, row := range wh {
		h, err := parseWebhookRow(row)
		if err != nil {
			return err
		}
		r.hooks = append(r.hooks, h)
	}
	r.write(strings.TrimSpace(string(cmds)))
	return nil
}

func readMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read meta: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

// readTSV returns rows as maps when header is true (keyed by column name),
// else as maps keyed by the webhookload column names.
func readTSV(path string, header bool) ([]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	cols := strings.Split("server\tproto\tmode\tsent\terrors\treviews_per_s\tp50_us\tp99_us\tmax_us\tcpu_us_per_review", "\t")
	if header {
		if len(lines) == 0 || lines[0] == "" {
			return nil, fmt.Errorf("%s: no header", path)
		}
		cols, lines = strings.Split(lines[0], "\t"), lines[1:]
	}
	var rows []map[string]string
	for i, l := range lines {
		if l == "" {
			continue
		}
		f := strings.Split(l, "\t")
		if len(f) != len(cols) {
			return nil, fmt.Errorf("%s line %d: %d fields, want %d", path, i+1, len(f), len(cols))
		}
		row := map[string]string{}
		for j, c := range cols {
			row[c] = f[j]
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// serverRow is one server under one DNS workload.
type serverRow struct {
	name, workload, binaryNote string
	qps, avgS, maxS, sdS       float64
	sent, completed, lost      int64
	cpuUsPerQuery              float64
	ticks                      int64
	idle, end                  mem // memsample: two seconds after start, after this workload
	binaryBytes                int64
}

// mem is one test/bench/memsample sample, in KiB.
type mem struct {
	vmrss, hwm, rssAnon, pss, pssAnon int64
	cgUsage, cgPeak, cgRSS, cgCache   int64
	cgOOMKills                        int64
}

func parseServerRow(m map[string]string) (serverRow, error) {
	var s serverRow
	var errs []error
	f := func(k string) float64 {
		v, err := strconv.ParseFloat(m[k], 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: column %s=%q: %w", m["server"], m["workload"], k, m[k], err))
		}
		return v
	}
	i := func(k string) int64 { return int64(f(k)) }
	s.name, s.workload, s.binaryNote = m["server"], m["workload"], m["binary_note"]
	s.qps, s.avgS, s.maxS, s.sdS = f("qps"), f("avg_s"), f("max_s"), f("sd_s")
	s.sent, s.completed, s.lost = i("sent"), i("completed"), i("lost")
	ticks, tck := f("cpu_ticks"), f("clk_tck")
	s.ticks = int64(ticks)
	if s.completed > 0 && tck > 0 {
		s.cpuUsPerQuery = ticks / tck * 1e6 / float64(s.completed)
	}
	s.binaryBytes = i("binary_bytes")
	for _, x := range []struct {
		prefix string
		m      *mem
	}{{"idle_", &s.idle}, {"end_", &s.end}} {
		*x.m = mem{
			vmrss: i(x.prefix + "vmrss_kib"), hwm: i(x.prefix + "hwm_kib"), rssAnon: i(x.prefix + "rss_anon_kib"),
			pss: i(x.prefix + "pss_kib"), pssAnon: i(x.prefix + "pss_anon_kib"),
			cgUsage: i(x.prefix + "cg_usage_kib"), cgPeak: i(x.prefix + "cg_peak_kib"), cgRSS: i(x.prefix + "cg_rss_kib"),
			cgCache: i(x.prefix + "cg_cache_kib"), cgOOMKills: i(x.prefix + "cg_oom_kills"),
		}
	}
	return s, errors.Join(errs...)
}

// hookRow is one webhookload step.
type hookRow struct {
	server, proto, mode string
	sent, errors        int64
	rps, p50, p99, max  float64
	cpuUs               float64 // 0 when not measured
}

func parseWebhookRow(m map[string]string) (hookRow, error) {
	var h hookRow
	var errs []error
	f := func(k string) float64 {
		if m[k] == "-" {
			return 0
		}
		v, err := strconv.ParseFloat(m[k], 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook %s %s: column %s=%q: %w", m["server"], m["mode"], k, m[k], err))
		}
		return v
	}
	h.server, h.proto, h.mode = m["server"], m["proto"], m["mode"]
	h.sent, h.errors = int64(f("sent")), int64(f("errors"))
	h.rps, h.p50, h.p99, h.max, h.cpuUs = f("reviews_per_s"), f("p50_us"), f("p99_us"), f("max_us"), f("cpu_us_per_review")
	return h, errors.Join(errs...)
}

type report struct {
	w       io.Writer
	meta    map[string]string
	servers []serverRow
	hooks   []hookRow
	tcp     map[string]string
	hostile []map[string]string
}

func (r *report) p(format string, a ...any) { fmt.Fprintf(r.w, format+"\n", a...) }

func (r *report) server(name, workload string) (serverRow, bool) {
	for _, s := range r.servers {
		if s.name == name && s.workload == workload {
			return s, true
		}
	}
	return serverRow{}, false
}

// serverOrder lists the servers as the tables show them, ours first.
var serverOrder = []string{"dnsguard", "dnsguard-fresh", "unbound", "dnsmasq", "coredns"}

var serverTitle = map[string]string{
	"dnsguard": "**dnsguard resolver**", "dnsguard-fresh": "dnsguard, `--udp-socket-reuse=1` (fresh socket per query)", "unbound": "unbound", "dnsmasq": "dnsmasq", "coredns": "CoreDNS",
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func mib(kib int64) string {
	if kib <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

func (r *report) write(commands string) {
	m := r.meta
	r.p("# Benchmarks")
	r.p("")
	r.p("Generated by `%s` (`hack/bench.sh`, `test/bench/`) at commit `%s` on %s. Do not edit by hand: run `make bench` again.", m["command"], m["commit"], m["date"])
	r.p("")
	r.p("The 10-minute resolver soak (`make soak`: memory and goroutines over time at a fixed query rate, no lost query allowed) has its own page: [soak.md](soak.md).")
	r.p("")
	r.p("## Machine and noise")
	r.p("")
	r.p("- %s CPUs: %s; kernel %s; %s.", m["nproc"], m["cpu"], m["kernel"], m["go"])
	r.p("- Peers: unbound %s, dnsmasq %s (Debian packages), CoreDNS %s (built from source with the same Go, stripped); load generator dnsperf %s.", m["unbound"], m["dnsmasq"], m["coredns"], m["dnsperf"])
	r.p("- Servers pinned to CPU %s (`taskset`), so a Go server runs with GOMAXPROCS=1; dnsperf, the upstream and the webhook load generator on CPU %s; all of them at niceness %s.", m["server_cpu"], m["client_cpu"], m["nice"])
	r.p("- Load average at the end of the run: %s (%s). Absolute queries/s and latencies depend on what else runs; the **ratios between servers measured in the same run**, and CPU time per query (which counts only the server's own CPU time, not time it waited), are the figures to read.", m["loadavg"], loadNote(m["loadavg"], m["nproc"]))
	r.p("")
	r.writeResolver()
	r.writeWebhook()
	r.writeTargets()
	r.p("## How it was measured")
	r.p("")
	r.p("- Each DNS server is a caching forwarder on its own loopback address (port 10053) in front of the same upstream, `test/bench/authdns` (miekg/dns, synthesizes an A/AAAA answer with TTL 3600 for any name). One server runs at a time.")
	r.p("- **Cache hits**: 100 names × A and AAAA (200 questions), warmed with two unmeasured passes, then %s s of dnsperf (`-c 4 -T 1 -q 100`). **Cache misses**: unique names `mN.miss.bench.example A`, each asked once (`-n 1`), %s s.", m["duration"], m["duration"])
	r.p("- **Server CPU per query** = (utime+stime ticks of the server from `/proc/PID/stat` after − before) ÷ CLK_TCK ÷ queries dnsperf saw answered. Its resolution is one tick (10 ms) over a run of seconds, well under 1%%. **Queries/s per core** = 1 s ÷ CPU per query: what one core could answer if the server had it to itself.")
	r.p("- **Memory**: each server runs in a cgroup v1 memory controller of its own, made for the run by `test/bench/memsample exec`, which first drops the server's executable from the page cache so that the server's cgroup is charged for it. Sampled two seconds after start (idle) and after each workload: `VmRSS`, `VmHWM`, `RssAnon` (`/proc/PID/status`), `Pss`, `Pss_Anon` (`/proc/PID/smaps_rollup`), and the cgroup's `memory.usage_in_bytes`, `memory.max_usage_in_bytes` (peak), `memory.stat` rss and cache, and OOM kills. Shared libraries that other processes on the machine map (libc, libssl) stay cached and are not charged to unbound's or dnsmasq's cgroup; PSS counts their share. **Binary**: size after `strip`; unbound and dnsmasq are dynamically linked, so their shared libraries come on top.")
	r.p("- dnsperf 2.10 reports average, maximum and standard deviation of latency but no percentiles.")
	r.p("- Webhook: `test/bench/webhookload load` sends the AdmissionReview in `test/bench/webhookload/testdata/deployment-pod-review.json` (a 6 KiB pod of a Deployment: two containers, probes, projected token volume) over keep-alive HTTPS; closed loop with 1/8/32/128 workers for %s each, then open loop for 10 s at half the floor's best closed-loop reviews/s of the same protocol in this run (latency from the scheduled send time). The same closed loop runs with `large-pod-review.json` (100 containers, 200 KiB) against both. Every answer is checked (HTTP 200 and the request UID; the first one fully decoded). The floor is `webhookload floor`: a standard-library handler that reads the body (7 MiB limit), decodes the review and the Pod, re-encodes the Pod and answers allowed. The webhook runs with its defaults (log level info: one JSON log line per patched pod, written to a file).", m["webhook_duration"])
	r.p("")
	r.p("Commands (addresses as run):")
	r.p("")
	r.p("```")
	r.p("%s", commands)
	r.p("```")
}

func (r *report) writeResolver() {
	for _, wl := range []struct{ key, title string }{{"hit", "cache hits"}, {"miss", "cache misses (unique names)"}} {
		r.p("## Resolver: %s", wl.title)
		r.p("")
		r.p("| server | queries/s | lost | avg latency µs | max latency ms | **server CPU µs/query** | CPU ticks | queries/s per core | CPU/query vs unbound | vs CoreDNS |")
		r.p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		ub, _ := r.server("unbound", wl.key)
		cd, _ := r.server("coredns", wl.key)
		for _, name := range serverOrder {
			s, ok := r.server(name, wl.key)
			if !ok {
				r.p("| %s | not measured | | | | | | | | |", serverTitle[name])
				continue
			}
			perCore := "–"
			if s.cpuUsPerQuery > 0 {
				perCore = fmt.Sprintf("%.0f", 1e6/s.cpuUsPerQuery)
			}
			r.p("| %s | %.0f | %d | %.0f | %.1f | **%.2f** | %d | %s | %s | %s |", serverTitle[name], s.qps, s.lost,
				s.avgS*1e6, s.maxS*1e3, s.cpuUsPerQuery, s.ticks, perCore, ratio(s.cpuUsPerQuery, ub.cpuUsPerQuery), ratio(s.cpuUsPerQuery, cd.cpuUsPerQuery))
		}
		r.p("")
		r.p("Ratios are CPU per query relative to the peer: below 1× means cheaper than the peer. On a busy machine the queries/s column mostly shows how soon each server gets its core back after waiting; compare the CPU columns.")
		r.p("")
	}
	if t := r.tcp; t != nil {
		r.p("## Resolver: TCP upstream (`--force-tcp`)")
		r.p("")
		r.p("%s unique misses/s for %s s through the resolver with every upstream query over TCP: sockets in TIME-WAIT before and after (`ss -Htan state time-wait`) on the resolver's side of its upstream connections and on the upstream's side (authdns, like any miekg/dns server, closes a connection after 128 queries; the side that closes keeps the TIME-WAIT), and the resolver's established connections to the upstream at the end. Before connection reuse every try opened and closed its own connection: one resolver-side TIME-WAIT per miss.", t["rate"], t["seconds"])
		r.p("")
		r.p("| sent | answered | lost | TIME-WAIT resolver side before → after | upstream side before → after | upstream connections |")
		r.p("|---:|---:|---:|---:|---:|---:|")
		r.p("| %s | %s | %s | %s → %s | %s → %s | %s |", t["sent"], t["completed"], t["lost"], t["timewait_before"], t["timewait_after"], t["upstream_timewait_before"], t["upstream_timewait_after"], t["upstream_conns"])
		r.p("")
	}
	r.writeMemory()
}

func (r *report) hook(server, proto, mode string) (hookRow, bool) {
	for _, h := range r.hooks {
		if h.server == server && h.proto == proto && h.mode == mode {
			return h, true
		}
	}
	return hookRow{}, false
}

// floorOf names the floor row a webhook row is compared with.
func floorOf(server string) string {
	if strings.HasSuffix(server, "-large") {
		return "floor-large"
	}
	return "floor"
}

// openRow returns server's open-loop row over proto.
func (r *report) openRow(server, proto string) (hookRow, bool) {
	for _, h := range r.hooks {
		if h.server == server && h.proto == proto && strings.HasPrefix(h.mode, "rate=") {
			return h, true
		}
	}
	return hookRow{}, false
}

// worstRatio is the largest webhook/floor CPU ratio over the closed-loop
// rows of server (both protocols), with where it was seen.
func (r *report) worstRatio(server string) (worst float64, where string) {
	for _, h := range r.hooks {
		if h.server != server || !strings.HasPrefix(h.mode, "c=") || h.cpuUs <= 0 {
			continue
		}
		if f, ok := r.hook(floorOf(server), h.proto, h.mode); ok && f.cpuUs > 0 && h.cpuUs/f.cpuUs > worst {
			worst, where = h.cpuUs/f.cpuUs, h.proto+" "+h.mode
		}
	}
	return worst, where
}

func (r *report) writeHostile() {
	if len(r.hostile) == 0 {
		return
	}
	r.p("")
	r.p("Hostile clients (`webhookload hostile`): concurrent senders of maximum-size reviews plus stalled connections (headers and 4 KiB of a large body, then nothing), while ordinary reviews (every 50 ms) and `/healthz` (every 100 ms, 1 s timeout, from a process of its own on a new connection each time, as the kubelet probes) go on; RSS sampled every 20 ms.")
	r.p("")
	r.p("| server | large senders × bytes | stalled | large: 200 / 429 / other | ordinary 200 / sent | /healthz max ms (failed) | peak RSS MiB |")
	r.p("|---|---|---:|---|---|---|---:|")
	for _, m := range r.hostile {
		rss, _ := strconv.ParseFloat(m["peak_rss_kib"], 64)
		r.p("| %s | %s × %s | %s | %s / %s / %s | %s / %s | %s (%s) | %.1f |", m["server"], m["big"], m["big_bytes"], m["stalled"],
			m["big_200"], m["big_429"], m["big_other"], m["normal_200"], m["normal_sent"], m["healthz_max_ms"], m["healthz_fail"], rss/1024)
	}
}

func (r *report) writeWebhook() {
	r.p("## Webhook: reviews over HTTPS, server on one core")
	r.p("")
	r.p("| server | protocol | load | reviews/s | p50 µs | p99 µs | max µs | errors | **server CPU µs/review** | reviews/s per core | CPU vs floor |")
	r.p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	if len(r.hooks) == 0 {
		r.p("| not measured | | | | | | | | | | |")
	}
	for _, h := range r.hooks {
		perCore := "–"
		if h.cpuUs > 0 {
			perCore = fmt.Sprintf("%.0f", 1e6/h.cpuUs)
		}
		vs := "–"
		if f, ok := r.hook(floorOf(h.server), h.proto, h.mode); ok && h.server != floorOf(h.server) {
			vs = ratio(h.cpuUs, f.cpuUs)
		}
		name := h.server
		switch name {
		case "webhook":
			name = "**dnsguard webhook**"
		case "webhook-large":
			name = "**dnsguard webhook**, 200 KiB pod"
		case "floor-large":
			name = "floor, 200 KiB pod"
		}
		r.p("| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %d | **%.1f** | %s | %s |", name, h.proto, h.mode, h.rps, h.p50, h.p99, h.max, h.errors, h.cpuUs, perCore, vs)
	}
	r.p("")
	r.writeHostile()
	r.p("`c=N`: N workers back to back (closed loop). `rate=R`: R reviews/s whatever the answers (open loop), R being half the floor's best closed-loop reviews/s in this run. The load generator has one core too; at high concurrency it, not the server, may limit reviews/s, which is why reviews/s per core is computed from the server's CPU time.")
	r.p("")
}

// target is one line of the targets table.
type target struct {
	what, want, got string
	met             *bool
}

func (r *report) writeTargets() {
	var ts []target
	yes := func(b bool) *bool { return &b }
	ours := func(wl string) (serverRow, bool) { return r.server("dnsguard", wl) }
	hit, okHit := ours("hit")
	miss, okMiss := ours("miss")
	ubHit, okUB := r.server("unbound", "hit")
	cdHit, okCD := r.server("coredns", "hit")
	cdMiss, okCDm := r.server("coredns", "miss")

	t := target{what: "resolver cache-hit CPU/query vs unbound", want: "≤ 1.00×"}
	if okHit && okUB && ubHit.cpuUsPerQuery > 0 {
		x := hit.cpuUsPerQuery / ubHit.cpuUsPerQuery
		t.got, t.met = fmt.Sprintf("%.2f× (%.2f vs %.2f µs)", x, hit.cpuUsPerQuery, ubHit.cpuUsPerQuery), yes(x <= 1.0)
	}
	ts = append(ts, t)
	ubMiss, okUBm := r.server("unbound", "miss")
	t = target{what: "resolver cache-miss CPU/query vs unbound (random-port socket pool)", want: "≤ 0.80×"}
	if okMiss && okUBm && ubMiss.cpuUsPerQuery > 0 {
		x := miss.cpuUsPerQuery / ubMiss.cpuUsPerQuery
		t.got, t.met = fmt.Sprintf("%.2f× (%.2f vs %.2f µs)", x, miss.cpuUsPerQuery, ubMiss.cpuUsPerQuery), yes(x <= 0.8)
	}
	ts = append(ts, t)
	t = target{what: "resolver cache-hit queries per core vs CoreDNS", want: "≥ 1.5×"}
	if okHit && okCD && hit.cpuUsPerQuery > 0 {
		x := cdHit.cpuUsPerQuery / hit.cpuUsPerQuery
		t.got, t.met = fmt.Sprintf("%.2f× (%.2f vs %.2f µs)", x, hit.cpuUsPerQuery, cdHit.cpuUsPerQuery), yes(x >= 1.5)
	}
	ts = append(ts, t)
	t = target{what: "resolver cache-miss throughput vs CoreDNS", want: "≥ 1.00×"}
	if okMiss && okCDm && cdMiss.qps > 0 {
		x := miss.qps / cdMiss.qps
		t.got, t.met = fmt.Sprintf("%.2f× (%.0f vs %.0f q/s; CPU/query %.2f vs %.2f µs)", x, miss.qps, cdMiss.qps, miss.cpuUsPerQuery, cdMiss.cpuUsPerQuery), yes(x >= 1)
	}
	ts = append(ts, t)
	t = target{what: "resolver idle VmRSS (counts its executable's mapped pages)", want: "≤ 6 MiB"}
	if okHit {
		t.got, t.met = mib(hit.idle.vmrss)+" MiB", yes(hit.idle.vmrss <= 6<<10)
	}
	ts = append(ts, t)
	t = target{what: "resolver peak VmHWM under load", want: "≤ 12 MiB"}
	if okHit && okMiss {
		peak := miss.end.hwm
		t.got, t.met = mib(peak)+" MiB", yes(peak <= 12<<10)
	}
	ts = append(ts, t)
	t = target{what: "resolver stripped binary", want: "≤ 7 MiB"}
	if okHit {
		t.got, t.met = fmt.Sprintf("%.1f MiB", float64(hit.binaryBytes)/(1<<20)), yes(hit.binaryBytes <= 7<<20)
	}
	ts = append(ts, t)
	t = target{what: "resolver lost queries", want: "0"}
	if okHit && okMiss {
		t.got, t.met = fmt.Sprintf("%d (hits) + %d (misses)", hit.lost, miss.lost), yes(hit.lost+miss.lost == 0)
	}
	ts = append(ts, t)
	if tw := r.tcp; tw != nil {
		t = target{what: "TCP upstream: resolver-side TIME-WAIT growth over the miss flood, lost queries", want: "< 100, 0"}
		before, _ := strconv.Atoi(tw["timewait_before"])
		after, _ := strconv.Atoi(tw["timewait_after"])
		lost, _ := strconv.Atoi(tw["lost"])
		t.got, t.met = fmt.Sprintf("%d → %d, %d lost", before, after, lost), yes(after-before < 100 && lost == 0)
		ts = append(ts, t)
	}

	// No absolute reviews/s target: that is a machine's number, not a
	// ratio (issue 18); the per-review CPU ratios to the floor below are.
	for _, server := range []string{"webhook", "webhook-large"} {
		what := map[string]string{"webhook": "6 KiB pod", "webhook-large": "200 KiB pod"}[server]
		t = target{what: "webhook CPU/review vs floor, " + what + " (worst closed-loop step, HTTP/1.1 and HTTP/2)", want: "≤ 1.2×"}
		if worst, where := r.worstRatio(server); worst > 0 {
			t.got, t.met = fmt.Sprintf("%.2f× (at %s)", worst, where), yes(worst <= 1.2)
		}
		ts = append(ts, t)
	}
	for _, proto := range []string{"h2", "h1"} {
		t = target{what: "webhook open loop at half the floor's capacity (" + map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2"}[proto] + "): errors, p99 vs floor", want: "0, ≤ 2×"}
		h, ok := r.openRow("webhook", proto)
		f, fok := r.openRow("floor", proto)
		if ok && fok && f.p99 > 0 {
			t.got, t.met = fmt.Sprintf("%s: %d errors, p99 %.2f ms vs %.2f ms (%.2f×)", h.mode, h.errors, h.p99/1000, f.p99/1000, h.p99/f.p99), yes(h.errors == 0 && h.p99 <= 2*f.p99)
		}
		ts = append(ts, t)
	}
	for _, m := range r.hostile {
		if m["server"] != "webhook" {
			continue
		}
		rss, _ := strconv.ParseFloat(m["peak_rss_kib"], 64)
		hmax, _ := strconv.Atoi(m["healthz_max_ms"])
		t = target{what: fmt.Sprintf("webhook under %s × %s B reviews + %s stalled connections: peak RSS, /healthz, ordinary reviews", m["big"], m["big_bytes"], m["stalled"]), want: "≤ 128 MiB, < 1 s, all 200"}
		t.got = fmt.Sprintf("%.1f MiB; /healthz max %d ms, %s failed; ordinary %s/%s 200", rss/1024, hmax, m["healthz_fail"], m["normal_200"], m["normal_sent"])
		t.met = yes(rss <= 128*1024 && hmax < 1000 && m["healthz_fail"] == "0" && m["normal_200"] == m["normal_sent"] && m["normal_sent"] != "0")
		ts = append(ts, t)
	}

	r.p("## Targets (issues 3, 7, 13 and 14)")
	r.p("")
	r.p("| target | wanted | measured | |")
	r.p("|---|---|---|---|")
	for _, t := range ts {
		verdict := "not measured"
		if t.met != nil {
			verdict = map[bool]string{true: "met", false: "**NOT met**"}[*t.met]
		}
		if t.got == "" {
			t.got = "–"
		}
		r.p("| %s | %s | %s | %s |", t.what, t.want, t.got, verdict)
	}
	r.p("")
}

// loadNote says, from the figures, whether other work shared the machine.
func loadNote(loadavg, nproc string) string {
	f := strings.Fields(loadavg)
	n, err := strconv.ParseFloat(nproc, 64)
	if len(f) == 0 || err != nil || n <= 0 {
		return "unknown"
	}
	l, err := strconv.ParseFloat(f[0], 64)
	switch {
	case err != nil:
		return "unknown"
	case l >= n:
		return fmt.Sprintf("%.1f runnable tasks per CPU over the last minute: other jobs took CPU time during the run", l/n)
	case l >= n/2:
		return "other jobs ran beside the benchmark"
	default:
		return "the machine was mostly idle apart from the benchmark"
	}
}

// writeMemory writes what each server cost in memory: as the pod pays it
// (its memory cgroup), privately (RssAnon, Pss_Anon) and as VmRSS.
func (r *report) writeMemory() {
	r.p("## Resolver: memory and size")
	r.p("")
	r.p("MiB. Idle: two seconds after start. Peak: the cgroup's `max_usage_in_bytes` and the process's `VmHWM` after the miss workload (which runs after the hit workload, so it is the peak of both); anonymous and PSS at the end of the miss workload.")
	r.p("")
	r.p("| server | **cgroup idle** | **cgroup peak** | cgroup cache at end | RssAnon idle → end | Pss_Anon end | PSS idle → end | VmRSS idle | VmHWM | OOM kills | stripped binary MiB | linking |")
	r.p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	type peak struct {
		name string
		kib  int64
	}
	var peaks []peak
	for _, name := range serverOrder {
		h, ok1 := r.server(name, "hit")
		mi, ok2 := r.server(name, "miss")
		if !ok1 || !ok2 {
			r.p("| %s | not measured | | | | | | | | | | |", serverTitle[name])
			continue
		}
		e := mi.end
		r.p("| %s | **%s** | **%s** | %s | %s → %s | %s | %s → %s | %s | %s | %d | %.1f | %s |", serverTitle[name],
			mib(h.idle.cgUsage), mib(e.cgPeak), mib(e.cgCache), mib(h.idle.rssAnon), mib(e.rssAnon), mib(e.pssAnon),
			mib(h.idle.pss), mib(e.pss), mib(h.idle.vmrss), mib(e.hwm), e.cgOOMKills, float64(h.binaryBytes)/(1<<20), h.binaryNote)
		peaks = append(peaks, peak{name, e.cgPeak})
	}
	r.p("")
	if len(peaks) > 1 {
		sort.Slice(peaks, func(i, j int) bool { return peaks[i].kib < peaks[j].kib })
		order := make([]string, len(peaks))
		for i, p := range peaks {
			order[i] = fmt.Sprintf("%s %s MiB", strings.Trim(serverTitle[p.name], "*"), mib(p.kib))
		}
		r.p("By cgroup peak, lowest first: %s.", strings.Join(order, ", "))
		r.p("")
	}
}
