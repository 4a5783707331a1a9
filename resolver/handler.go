package resolver

import (
	"context"
	"errors"
	"sync"
	"time"
)

// staleTTL is the TTL of answers served stale (RFC 8767 §4 suggests 30 s).
const staleTTL = 30

// scratch is per-goroutine state of the hot path, reused between packets
// so a cache hit allocates nothing.
type scratch struct {
	q   query
	key []byte
	out []byte
	pkt []byte // private copy of a query resolved off the reader goroutine
}

func newScratch() *scratch {
	return &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 512)}
}

// action says what the caller of answerFast must do.
type action int

const (
	actDrop    action = iota // send nothing
	actReply                 // send sc.out
	actResolve               // go upstream (answerSlow), off the reader goroutine
)

// answerFast handles everything that needs no upstream: parsing, policy
// refusals and cache hits. On actReply the reply is in the returned slice
// (backed by sc.out).
func (s *Server) answerFast(pkt []byte, sc *scratch, tcp bool) ([]byte, action) {
	q := &sc.q
	err := parseQuery(pkt, q)
	switch {
	case errors.Is(err, errShort):
		// An unparseable header gets no reply: any reply could be used to
		// amplify (miekg/dns server.go does the same).
		s.metrics.dropped.inc("short")
		return nil, actDrop
	case errors.Is(err, errNotResponse):
		s.metrics.dropped.inc("response")
		return nil, actDrop
	case err != nil:
		s.metrics.dropped.inc("formerr")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeFormErr)), actReply
	}
	switch {
	case q.opcode() != 0:
		s.metrics.dropped.inc("notimp")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeNotImp)), actReply
	case q.edns && q.ednsVer != 0:
		s.metrics.dropped.inc("badvers")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeBadVers)), actReply
	case q.qtype == typeOPT:
		s.metrics.dropped.inc("formerr")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeFormErr)), actReply
	case q.qclass != classIN:
		// CHAOS (version.bind, id.server: used by `resolver probe`) and
		// the other classes are answered here, never forwarded.
		s.metrics.dropped.inc("class")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeRefused)), actReply
	case q.qtype == typeANY:
		s.metrics.dropped.inc("any")
		return s.finish(appendANYReply(sc.out[:0], q)), actReply
	case q.qtype == typeAXFR || q.qtype == typeIXFR || q.qtype == typeMAILA || q.qtype == typeMAILB:
		s.metrics.dropped.inc("xfr")
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeRefused)), actReply
	}
	sc.key = appendKey(sc.key[:0], q.qname(), q.qtype, q.qclass, q.do, q.cd())
	now := s.now()
	it, fresh := s.cache.lookup(sc.key, now)
	if it != nil && fresh {
		s.metrics.cacheHits.inc()
		s.maybePrefetch(it, sc.key, q, now)
		return s.finish(it.appendReply(sc.out[:0], q, now, 0, s.maxSize(q, tcp))), actReply
	}
	if it != nil && now.UnixNano() < it.retryAfter.Load() {
		// A refresh failed moments ago: serve stale without asking again.
		s.metrics.stale.inc()
		return s.finish(it.appendReply(sc.out[:0], q, now, staleTTL, s.maxSize(q, tcp))), actReply
	}
	s.metrics.cacheMisses.inc()
	return nil, actResolve
}

func (s *Server) maxSize(q *query, tcp bool) int {
	if tcp {
		return 65535
	}
	return q.udpSize
}

// finish counts a reply; truncation is counted by rcode-independent flag.
func (s *Server) finish(reply []byte) []byte {
	s.metrics.response(reply)
	if len(reply) > 2 && reply[2]&(flagTC>>8) != 0 {
		s.metrics.truncated.inc()
	}
	return reply
}

// staleAfter is RFC 8767's client response timer: when a stale answer is
// at hand and the upstream has not answered after this long, the client
// gets the stale answer while the resolution goes on for the cache. Half
// the stubs' usual 2 s timeout (timeout:2 in pods' resolv.conf), not
// RFC 8767's 1.8 s: glibc with single-request-reopen (dnsguard's own
// option) asks AAAA only after the A is answered, both within one timeout
// window, so two stale answers must fit in it. At 1.8 s they did not: in
// the fault matrix's upstream outage (TestFaultMatrix, fault f) glibc
// lookups through the sidecar took 2.006-2.009 s (the stub's timeout ran
// out and it asked again); at 0.9 s they took 1.80-1.81 s.
const staleAfter = 900 * time.Millisecond

// answerSlow answers a query that answerFast sent upstream: sc.q and
// sc.key must still describe it. It blocks for at most the upstream budget.
func (s *Server) answerSlow(sc *scratch, tcp bool) []byte {
	q := &sc.q
	if s.inflight.Add(1) > int64(s.cfg.MaxInflight) {
		s.inflight.Add(-1)
		s.metrics.dropped.inc("overload")
		s.rlog.Warn("too many upstream resolutions in flight; answering SERVFAIL", "limit", s.cfg.MaxInflight)
		return s.finish(appendErrorReply(sc.out[:0], q, rcodeServFail))
	}
	key, name, qtype, qclass, do, cd := string(sc.key), q.qname(), q.qtype, q.qclass, q.do, q.cd()
	var st *item
	if s.cfg.ServeStale {
		st = s.staleFor(sc.key, s.now())
	}
	var it *item
	var err error
	if st == nil {
		it, err = s.resolve(key, name, qtype, qclass, do, cd)
		s.inflight.Add(-1)
	} else {
		// A stale answer is at hand: wait for upstream at most staleAfter.
		type res struct {
			it  *item
			err error
		}
		ch := make(chan res, 1)
		name = append([]byte(nil), name...)
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer s.inflight.Add(-1)
			it, err := s.resolve(key, name, qtype, qclass, do, cd)
			ch <- res{it, err}
		}()
		t := time.NewTimer(staleAfter)
		select {
		case r := <-ch:
			it, err = r.it, r.err
		case <-t.C:
			err = errStaleTimer
		}
		t.Stop()
	}
	now := s.now()
	if err != nil || it.rcode == rcodeServFail {
		if s.cfg.ServeStale {
			if st := s.staleFor(sc.key, now); st != nil {
				s.metrics.stale.inc()
				return s.finish(st.appendReply(sc.out[:0], q, now, staleTTL, s.maxSize(q, tcp)))
			}
		}
		if err != nil {
			return s.finish(appendErrorReply(sc.out[:0], q, rcodeServFail))
		}
	}
	return s.finish(it.appendReply(sc.out[:0], q, now, 0, s.maxSize(q, tcp)))
}

var errStaleTimer = errors.New("client response timer expired")

// staleFor returns the entry for key when it may be served stale at now.
func (s *Server) staleFor(key []byte, now time.Time) *item {
	st := s.cache.get(key)
	if st != nil && st.rcode != rcodeServFail && now.Before(st.expires().Add(s.cfg.StaleMaxAge)) {
		return st
	}
	return nil
}

// flight is one upstream resolution that identical queries wait for.
type flight struct {
	// done is waited on by the queries that joined: a WaitGroup rather
	// than a channel saves an allocation on every miss.
	done sync.WaitGroup
	it   *item
	err  error
}

// flights coalesces identical in-flight resolutions.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// resolve returns the answer for key, joining an identical resolution in
// flight if there is one, so N concurrent identical queries cost one
// upstream query.
func (s *Server) resolve(key string, name []byte, qtype, qclass uint16, do, cd bool) (*item, error) {
	s.flights.mu.Lock()
	if f, ok := s.flights.m[key]; ok {
		s.flights.mu.Unlock()
		s.metrics.coalesced.inc()
		f.done.Wait()
		return f.it, f.err
	}
	f := &flight{}
	f.done.Add(1)
	s.flights.m[key] = f
	s.flights.mu.Unlock()
	// The upstream query carries the lowercased name; replies are
	// patched back to each client's case.
	lname := make([]byte, len(name))
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lname[i] = c
	}
	f.it, f.err = s.fetch(key, lname, qtype, qclass, do, cd)
	s.flights.mu.Lock()
	delete(s.flights.m, key)
	s.flights.mu.Unlock()
	f.done.Done()
	return f.it, f.err
}

// fetch asks upstream and updates the cache.
func (s *Server) fetch(key string, name []byte, qtype, qclass uint16, do, cd bool) (*item, error) {
	reply, err := s.forwarder(name).Exchange(context.Background(), name, qtype, qclass, do, cd)
	now := s.now()
	var it *item
	if err == nil {
		if it, err = newItem(reply, now, s.pol); err != nil {
			s.rlog.Warn("discarding malformed upstream reply", "err", err)
		}
	}
	bkey := []byte(key)
	if err != nil || it.rcode == rcodeServFail {
		s.metrics.failures.inc()
		if err != nil {
			s.rlog.Warn("resolution failed", "name", wireName(name), "qtype", qtype, "err", err)
		}
		if st := s.cache.get(bkey); st != nil && s.cfg.ServeStale && st.rcode != rcodeServFail {
			// Keep the stale answer (it is better than SERVFAIL) and do not
			// ask upstream again for a while (RFC 8767 failure recheck).
			st.retryAfter.Store(now.Add(time.Duration(max(s.pol.servfailTTL, 1)) * time.Second).UnixNano())
			return it, err
		}
		if err != nil && s.pol.servfailTTL > 0 {
			// Cache the failure briefly so a dead upstream is not hammered.
			s.cache.set(bkey, servfailItem(name, qtype, qclass, now, s.pol.servfailTTL))
		}
		if err != nil {
			return nil, err
		}
	}
	if it.ttl > 0 {
		s.cache.set(bkey, it)
	}
	return it, nil
}

// servfailItem is the cache entry for a failed resolution.
func servfailItem(name []byte, qtype, qclass uint16, now time.Time, ttl uint32) *item {
	w := buildQuery(nil, name, qtype, qclass, false, false, false)
	w[2] = byte((flagQR | flagRD) >> 8)
	w[3] = byte(flagRA | rcodeServFail)
	// No records, so no TTL offsets: the capacity must end at the length.
	return &item{wire: w[:len(w):len(w)], rcode: rcodeServFail, stored: monoNanos(now), ttl: ttl}
}

// maybePrefetch refreshes a popular entry in the background shortly
// before it expires, so its clients never see the miss.
func (s *Server) maybePrefetch(it *item, key []byte, q *query, now time.Time) {
	if s.cfg.PrefetchHits == 0 {
		return
	}
	hits := it.hits.Add(1)
	if hits < uint32(s.cfg.PrefetchHits) || it.ttl < 10 || it.rcode != rcodeSuccess {
		return
	}
	left := it.expires().Sub(now)
	if left > time.Duration(it.ttl)*time.Second*time.Duration(s.cfg.PrefetchPercent)/100 {
		return
	}
	if !it.prefetching.CompareAndSwap(false, true) {
		return
	}
	// A prefetch is an upstream resolution like any other: it counts
	// against --max-inflight, and is skipped (the entry just expires as
	// usual) when the limit is reached.
	if s.inflight.Add(1) > int64(s.cfg.MaxInflight) {
		s.inflight.Add(-1)
		it.prefetching.Store(false)
		s.metrics.dropped.inc("prefetch_overload")
		return
	}
	s.metrics.prefetches.inc()
	k := string(key)
	name := append([]byte(nil), q.qname()...)
	qtype, qclass, do, cd := q.qtype, q.qclass, q.do, q.cd()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.inflight.Add(-1)
		s.resolve(k, name, qtype, qclass, do, cd)
	}()
}

// wireName renders a wire-format name for logs.
func wireName(b []byte) string {
	var out []byte
	for len(b) > 0 && b[0] != 0 {
		l := int(b[0])
		if 1+l > len(b) {
			break
		}
		out = append(append(out, b[1:1+l]...), '.')
		b = b[1+l:]
	}
	if len(out) == 0 {
		return "."
	}
	return string(out)
}
