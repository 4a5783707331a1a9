package resolver

import (
	"sync"
	"time"
)

// The per-try timeout adapts to each upstream's measured round-trip time,
// as unbound's infra cache and RFC 6298 do for TCP: a lost query is sent
// again after about the upstream's normal answer time plus four times its
// spread, not after a fixed second. A pod's lookup whose query or answer
// was lost on the way to CoreDNS then costs a few hundred milliseconds,
// below the C library's own retry, instead of the whole --timeout.
//
// Karn's rule (RFC 6298 §3: never sample an answer that could belong to an
// earlier transmission) holds by construction: every try has a socket and
// a query ID of its own (udpsock.go, trysend.go; a pipelined TCP query its
// own ID), so each answer is known to answer one try and is measured from
// that try's start. Late answers to tries already retransmitted are
// sampled too: they are what teaches the estimator that an upstream got
// slow.
//
// Within one exchange the first tries wait that timeout and later ones
// twice as long as the one before (backoff, capped by --timeout); earlier
// tries keep listening
// (listenLate), so a slow but alive upstream's answer still wins. The
// estimate itself is not backed off on a timeout (unbound doubles its
// server RTO): under random loss a lost datagram says nothing about the
// path's round-trip time, and a backed-off estimate would make the next
// lookups pay for this one's loss. A dead upstream is the health check's
// business (upstreamhealth.go), not the timer's.

const (
	// rtoInitial is the per-try timeout before an upstream's first answer
	// (unbound: 376 ms), raised to --min-timeout and cut to --timeout (so
	// --min-timeout = --timeout is a fixed timeout from the start).
	rtoInitial = 400 * time.Millisecond
	// DefaultMinTimeout is the default floor of the per-try timeout's
	// margin above the smoothed RTT (--min-timeout). 150 ms: far above the round trip to an in-cluster
	// CoreDNS and the spread of its cache misses (single milliseconds on
	// the node, tens when it forwards to a VPC resolver), so a timely
	// answer is not retransmitted over; and low enough that one loss
	// costs about 150 ms and three in a row (150 ms each, see backoff) still
	// stay below 500 ms, the race lab's bound for the sidecar rows. A slower answer
	// (a recursive miss behind CoreDNS) costs one more query upstream,
	// never a failure: the first try keeps listening and its late answer
	// counts for health and teaches the estimator.
	DefaultMinTimeout = 150 * time.Millisecond
)

// rttEstimator is one upstream's smoothed round-trip time and its mean
// deviation (Jacobson/Karels, RFC 6298 §2 with alpha 1/8 and beta 1/4).
type rttEstimator struct {
	mu      sync.Mutex
	srtt    time.Duration
	rttvar  time.Duration
	sampled bool
}

// sample takes one answered try's round-trip time.
func (e *rttEstimator) sample(rtt time.Duration) {
	if rtt < 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.sampled {
		e.srtt, e.rttvar, e.sampled = rtt, rtt/2, true
		return
	}
	dev := e.srtt - rtt
	if dev < 0 {
		dev = -dev
	}
	e.rttvar = e.rttvar - e.rttvar/4 + dev/4
	e.srtt = e.srtt - e.srtt/8 + rtt/8
}

// rto is the per-try timeout srtt + max(4·rttvar, floor), at most ceil,
// or the initial value (within floor..ceil) before any sample. The floor bounds
// the margin above the smoothed RTT, not just the sum, as Linux TCP does
// with tcp_rto_min: an upstream that answers in a steady 300 ms has a
// tiny variance, and srtt + 4·rttvar alone would then retransmit over
// every answer a few milliseconds late.
func (e *rttEstimator) rto(floor, ceil time.Duration) time.Duration {
	e.mu.Lock()
	srtt, rttvar, sampled := e.srtt, e.rttvar, e.sampled
	e.mu.Unlock()
	if !sampled {
		return min(max(rtoInitial, floor), ceil)
	}
	return min(srtt+max(4*rttvar, floor), ceil)
}

// backoff is the timeout of a try that follows n timed-out tries of the
// same exchange: base for the first four tries (baseTries), then doubled per
// further try, at most ceil (150, 150, 150, 150, 300, 600, 1000 ms for a
// fast upstream: a fifth try at 600 ms). The first retries do not wait longer because
// on the way to the cluster DNS a lost try says little about the next one:
// each try leaves from a new socket, so kube-proxy balances it afresh over
// CoreDNS's endpoints, and random loss is independent per packet. Doubling
// from the fifth try on still backs off from an upstream that is slow
// rather than lossy (earlier tries keep listening, so its late answer is
// taken). Measured on the node, fault matrix (d), CoreDNS rollout restart,
// with unique names per lookup: doubling from the second try made glibc
// lookups through the sidecar take 1.06 s (three tries lost: 150 + 300 +
// 600 ms); doubling from the third, 1.37 s (four lost: 150 + 150 + 300 +
// 600 ms); both over the 1 s no-stall bound.
func backoff(base, ceil time.Duration, n int) time.Duration {
	for n -= baseTries - 1; n > 0 && base < ceil; n-- {
		base *= 2
	}
	return min(base, ceil)
}

// baseTries is how many tries of one exchange wait the plain per-try
// timeout before the timeout doubles.
const baseTries = 4

// tryTimeout is the per-try timeout of the next try to u, after n tries
// of this exchange timed out.
func (f *Forwarder) tryTimeout(u *upstream, n int) time.Duration {
	return backoff(u.rtt.rto(f.minTimeout, f.maxTimeout), f.maxTimeout, n)
}
