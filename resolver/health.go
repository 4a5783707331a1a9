package resolver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// healthServer serves /healthz, /readyz and /metrics over plain HTTP/1.x
// on a loopback port (kubelet probes use `resolver probe` instead, since
// httpGet probes target the pod IP).
//
// It is a few dozen lines over net rather than net/http: three GET
// endpoints need no more, and net/http (with its HTTP/2 bundle) made up
// about a megabyte of the 7 MiB static binary. Every response closes the
// connection; requests are bounded in size and time.
type healthServer struct {
	ln net.Listener
	s  *Server
	// metricsOnly serves /metrics and nothing else: the --metrics-listen
	// listener may face the pod or node network, where the probes'
	// answers (draining, upstream counts) are nobody's business and a
	// scraper must never be mistaken for a probe.
	metricsOnly bool
	wg          sync.WaitGroup
	once        sync.Once
}

// healthMaxRequest bounds the request head a client may send.
const healthMaxRequest = 8 << 10

func newHealthServer(s *Server, addr string, metricsOnly bool) (*healthServer, error) {
	lc := net.ListenConfig{}
	if s.cfg.reusePort() {
		// Node mode: during a surge upgrade the next instance binds the
		// same host port beside this one (a DaemonSet's pods share one
		// template); requests then reach either until this one exits.
		lc.Control = reusePort
	}
	what := "health"
	if metricsOnly {
		what = "metrics"
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", what, addr, err)
	}
	h := &healthServer{ln: ln, s: s, metricsOnly: metricsOnly}
	h.wg.Add(1)
	go h.serve()
	return h, nil
}

func (h *healthServer) serve() {
	defer h.wg.Done()
	sem := make(chan struct{}, 16) // concurrent requests; more wait in the backlog
	for {
		c, err := h.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			h.s.rlog.Error("health accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		sem <- struct{}{}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer func() { <-sem }()
			h.handle(c)
		}()
	}
}

func (h *healthServer) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(&limitedReader{r: c, n: healthMaxRequest}, 1024)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	// Read (and ignore) the headers up to the blank line.
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimRight(l, "\r\n") == "" {
			break
		}
	}
	method, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	target, proto, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		writeHTTP(c, 400, "text/plain", "bad request\n", false)
		return
	}
	path, _, _ := strings.Cut(target, "?")
	head := method == "HEAD"
	if method != "GET" && !head {
		writeHTTP(c, 405, "text/plain", "method not allowed\n", false)
		return
	}
	if h.metricsOnly && path != "/metrics" {
		writeHTTP(c, 404, "text/plain", "not found\n", head)
		return
	}
	switch path {
	case "/healthz":
		writeHTTP(c, 200, "text/plain", "ok\n", head)
	case "/readyz":
		switch {
		case h.s.draining.Load():
			writeHTTP(c, 503, "text/plain", "draining\n", head)
		case !h.s.ready.Load():
			writeHTTP(c, 503, "text/plain", "starting\n", head)
		default:
			ok, n := h.s.healthyUpstreams()
			writeHTTP(c, 200, "text/plain", fmt.Sprintf("ok: %d/%d upstreams healthy\n", ok, n), head)
		}
	case "/metrics":
		var b bytes.Buffer
		h.s.metrics.WriteTo(&b)
		writeHTTP(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.String(), head)
	default:
		writeHTTP(c, 404, "text/plain", "not found\n", head)
	}
}

var statusText = map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

func writeHTTP(c net.Conn, code int, ctype, body string, head bool) {
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		code, statusText[code], ctype, len(body))
	if !head {
		w.WriteString(body)
	}
	w.Flush()
}

// limitedReader fails after n bytes, so a client cannot stream an endless
// request head.
type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too large")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

// shutdown stops accepting and waits for requests in progress (bounded by
// ctx; their own deadlines end them anyway).
func (h *healthServer) shutdown(ctx context.Context) error {
	var err error
	h.once.Do(func() { err = h.ln.Close() })
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("health server shutdown: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("health server shutdown: %w", err)
	}
	return nil
}
