package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// start runs argv in the background with its output in logDir/name.log.
func start(name, logDir string, argv ...string) (*harness.Proc, error) {
	return harness.Start(name, harness.Options{Log: filepath.Join(logDir, name+".log")}, argv...)
}

// stop ends a server the lab started (nil: none was), SIGKILL after 5 s.
func stop(p *harness.Proc) {
	if p != nil {
		_ = p.Stop(5 * time.Second)
	}
}

// waitFor polls ok every 100 ms for up to 10 s while p runs.
func waitFor(ctx context.Context, p *harness.Proc, what string, ok func() bool) error {
	for i := 0; i < 100; i++ {
		if p != nil {
			if done, _ := p.Exited(); done {
				return fmt.Errorf("%s exited: %s", p.Name, p.Tail(5))
			}
		}
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if p != nil {
		return fmt.Errorf("%s: %s not ready after 10s: %s", p.Name, what, p.Tail(5))
	}
	return fmt.Errorf("%s not ready after 10s", what)
}

// dnsmasq in ns answers A and AAAA for the test Service with TTL 0 (so no
// cache in any row hides the network path) and NXDOMAIN for every other
// name under cluster.local, like CoreDNS's kubernetes plugin.
func (b *backend) startDNSMasq(ns, ip string) (*harness.Proc, error) {
	argv := in(ns, append(b.pin("5"), "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
		"--bind-interfaces", "--listen-address="+ip, "--port=53",
		"--local=/cluster.local/", "--host-record="+fqdn+","+addr4+","+addr6, "--local-ttl=0",
		"--pid-file="+filepath.Join(b.work, ns+".dnsmasq.pid"), "--log-facility=-")...)
	return start(ns+".dnsmasq", b.logs, argv...)
}

// dig asks server for name/qtype from the pod, one try.
func (b *backend) dig(ctx context.Context, server, name, qtype string) string {
	out, _ := run(ctx, in(b.t.pod, "dig", "+short", "+time=1", "+tries=1", "@"+server, name, qtype)...)
	return strings.TrimSpace(out)
}

// startWebhook runs bin/webhook in the node namespace (its own loopback, no
// port clash with anything else on the machine) on port with extra flags;
// --shutdown-delay=0s: no API server to drain for.
func (b *backend) startWebhook(ctx context.Context, port string, extra ...string) (*harness.Proc, error) {
	argv := in(b.t.node, append([]string{filepath.Join(b.bin, "webhook"), "--listen=127.0.0.1:" + port,
		"--tls-cert-file=" + filepath.Join(b.work, "certs", "tls.crt"), "--tls-key-file=" + filepath.Join(b.work, "certs", "tls.key"),
		"--nameservers=" + svcIP, "--cluster-domain=cluster.local", "--shutdown-delay=0s",
		// No API server in the lab to ask whether native sidecars exist.
		"--native-sidecars=on"}, extra...)...)
	p, err := start("webhook."+port, b.logs, argv...)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, "/healthz", func() bool {
		_, err := run(ctx, in(b.t.node, "curl", "-sf", "--cacert", filepath.Join(b.work, "certs", "ca.crt"), "https://127.0.0.1:"+port+"/healthz")...)
		return err == nil
	})
}

// explain is the resolv.conf the webhook on port renders for a pod in
// namespace default annotated with mode.
func (b *backend) explain(ctx context.Context, port, mode string) (string, error) {
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"client","namespace":"default","annotations":{"dnsguard.io/mode":%q}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}`, mode)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", b.t.node, "curl", "-sS", "--fail-with-body", "--cacert", filepath.Join(b.work, "certs", "ca.crt"),
		"-H", "Content-Type: application/json", "--data-binary", "@-", "https://127.0.0.1:"+port+"/explain")
	cmd.Stdin = strings.NewReader(pod)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("/explain for mode %s on port %s: %w: %s%s", mode, port, err, out.String(), errb.String())
	}
	var ex struct {
		Mode       string  `json:"mode"`
		ResolvConf *string `json:"resolvConf"`
	}
	if err := json.Unmarshal(out.Bytes(), &ex); err != nil || ex.ResolvConf == nil {
		return "", fmt.Errorf("/explain for mode %s has no resolvConf: %s", mode, out.String())
	}
	if ex.Mode != mode {
		return "", fmt.Errorf("/explain answered mode %q for a pod annotated %q", ex.Mode, mode)
	}
	return *ex.ResolvConf, nil
}

// startSidecar runs bin/resolver as the pod's sidecar on 127.0.0.1:53,
// asking upstream (the Service IP; the blackhole in the control).
func (b *backend) startSidecar(ctx context.Context, mode, upstream string) (*harness.Proc, error) {
	argv := in(b.t.pod, "chrt", "-f", "5", filepath.Join(b.bin, "resolver"), "--listen=127.0.0.1:53", "--upstream="+upstream, "--health-listen=127.0.0.1:8053")
	p, err := start("resolver."+mode, b.logs, argv...)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, "answers", func() bool {
		_, err := run(ctx, in(b.t.pod, filepath.Join(b.bin, "resolver"), "probe", "--server=127.0.0.1:53")...)
		return err == nil
	})
}

// nodeHealth is the node cache's health and metrics listener.
const nodeHealth = "127.0.0.1:9254"

// startNodeCache runs bin/resolver --node-local in the node namespace on
// nodeLocalIP (its own interface and NOTRACK rules), asking the Service
// over TCP. The node's own traffic to the Service is DNATed in the output
// hook too, as kube-proxy does; the route only has to exist.
func (b *backend) startNodeCache(ctx context.Context, mode string) (*harness.Proc, error) {
	for _, argv := range [][]string{
		in(b.t.node, "nft", "add", "chain", "ip", "dgkube", "output", "{ type nat hook output priority -100; }"),
		in(b.t.node, "nft", "add", "rule", "ip", "dgkube", "output", "ip", "daddr", svcIP, "meta", "l4proto", "{ udp, tcp }", "th", "dport", "53",
			"dnat", "to", "numgen", "random", "mod", "2", "map", "{ 0 : "+ep1+", 1 : "+ep2+" }"),
		in(b.t.node, "ip", "route", "replace", svcIP+"/32", "dev", "vdns1"),
	} {
		if _, err := run(ctx, argv...); err != nil {
			return nil, err
		}
	}
	argv := in(b.t.node, "chrt", "-f", "5", filepath.Join(b.bin, "resolver"), "--node-local", "--node-local-address="+nodeLocalIP,
		"--cluster-upstream="+svcIP, "--upstream="+svcIP+":53", "--health-listen="+nodeHealth, "--drain=0s")
	p, err := start("resolver."+mode, b.logs, argv...)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, "ready", func() bool {
		_, err := run(ctx, in(b.t.node, filepath.Join(b.bin, "resolver"), "probe", "--readyz="+nodeHealth)...)
		return err == nil
	})
}
