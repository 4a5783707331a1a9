package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// item is one cached answer, kept as packed wire bytes so a cache hit is a
// copy plus a few in-place patches (ID, flags, question case, TTLs) rather
// than an unpack and a pack.
//
// Its layout is what the cache's memory is made of (10,000 entries by
// default), so it is compact: one fixed-size struct and one byte slice.
// The record TTLs are not kept apart: wire holds the clamped TTLs of the
// time of storage, and wire is never modified once built.
type item struct {
	// wire is header, question (lowercased name), answer, authority and
	// additional records, without OPT (it is hop-by-hop; RFC 6891). Its
	// spare capacity, wire[len(wire):cap(wire)], holds the big-endian
	// uint16 offsets of every record's TTL field: same allocation.
	wire  []byte
	rcode int
	// stored is when the answer arrived, in nanoseconds since clockBase
	// (8 bytes rather than a time.Time's 24); ttl its lifetime in seconds.
	stored int64
	ttl    uint32

	// kbits is the last byte of the cache key (DO and CD bits); the rest
	// of a cache key is wire's question (lowercased, as the key), so the
	// entry needs no copy of its key. With it the struct is 64 bytes.
	kbits byte

	prefetching atomic.Bool
	hits        atomic.Uint32
	// retryAfter (unix nanoseconds) delays the next upstream attempt for
	// an expired entry whose refresh just failed (RFC 8767 failure
	// recheck timer); until then it is served stale.
	retryAfter atomic.Int64
}

// clockBase anchors item.stored. With time.Now as the clock the
// difference is taken on the monotonic clock, as time.Time comparisons are.
var clockBase = time.Now()

func monoNanos(t time.Time) int64 { return int64(t.Sub(clockBase)) }

// expires is when the entry stops being fresh.
func (it *item) expires() time.Time {
	return clockBase.Add(time.Duration(it.stored) + time.Duration(it.ttl)*time.Second)
}

// fresh reports whether the entry may be served as a normal hit at now.
func (it *item) fresh(now time.Time) bool { return now.Before(it.expires()) }

// ttlOffsets are the positions of the records' TTL fields, two bytes each.
func (it *item) ttlOffsets() []byte { return it.wire[len(it.wire):cap(it.wire)] }

// recordTTLs are the records' stored (clamped) TTLs, in message order.
func (it *item) recordTTLs() []uint32 {
	offs := it.ttlOffsets()
	out := make([]uint32, 0, len(offs)/2)
	for i := 0; i+1 < len(offs); i += 2 {
		out = append(out, binary.BigEndian.Uint32(it.wire[binary.BigEndian.Uint16(offs[i:]):]))
	}
	return out
}

// wireKey reports whether key is the entry's question and DO/CD byte.
func (it *item) wireKey(key []byte) bool {
	n := len(key) - 1
	// A wire name is self-delimiting, so equal bytes mean equal name,
	// type and class.
	return n >= 0 && key[n] == it.kbits && len(it.wire) >= headerLen+n &&
		string(key[:n]) == string(it.wire[headerLen:headerLen+n])
}

// Approximate heap cost of an entry beyond its byte slice: the item
// struct (64 bytes) and its slot in the shard's map (a 16-byte slot plus
// a control byte, at the load a swiss table under eviction churn keeps:
// deleted slots make it grow early; TestCacheBytesBoundHeap measures it).
const itemOverhead = 64 + 40

// size is the memory an entry holds, for the cache byte bound: what the
// allocator really hands out (size classes), not just the payload, so
// --cache-bytes bounds the heap the cache takes.
func (it *item) size() int {
	return itemOverhead + allocSize(cap(it.wire))
}

// allocSize approximates the Go allocator's size class for n bytes
// (runtime/sizeclasses.go): 16-byte steps up to 256, then steps of about
// an eighth, which never undercounts by more than that.
func allocSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 256:
		return (n + 15) &^ 15
	}
	step := 1 << (bitsLen(n) - 4) // n/8 < step <= n/16*2
	return (n + step - 1) &^ (step - 1)
}

func bitsLen(n int) int {
	l := 0
	for ; n > 0; n >>= 1 {
		l++
	}
	return l
}

// ttlPolicy are the clamps applied when storing.
type ttlPolicy struct {
	min, max    uint32 // positive answers
	negMax      uint32 // NXDOMAIN / NODATA (RFC 2308), from the SOA
	servfailTTL uint32 // SERVFAIL / failed resolution
}

var (
	errMismatch  = errors.New("reply does not match the query")
	errTruncated = errors.New("reply truncated")
	// errMalformed is a reply that matches the query but whose records do
	// not parse: an upstream fault, failed over like a timeout rather than
	// handed to the cache (which would refuse it, leaving the client with
	// SERVFAIL while a healthy upstream waits unused).
	errMalformed = errors.New("malformed reply")
)

// checkReply verifies that b answers the upstream query up: same ID, QR
// set, same question (name compared case-insensitively). A mismatch is
// errMismatch: the caller discards it and keeps waiting.
func checkReply(b []byte, up []byte) error {
	if len(b) < headerLen || len(up) < headerLen {
		return errMismatch
	}
	if b[0] != up[0] || b[1] != up[1] || b[2]&0x80 == 0 {
		return errMismatch
	}
	if binary.BigEndian.Uint16(b[4:]) != 1 {
		return errMismatch
	}
	// up's question is headerLen..end of its qname+4, lowercased by us.
	qend, err := skipName(up, headerLen)
	if err != nil || qend+4 > len(up) {
		return errMismatch
	}
	n := qend + 4 - headerLen
	if len(b) < headerLen+n {
		return errMismatch
	}
	for i := 0; i < n; i++ {
		c := b[headerLen+i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != up[headerLen+i] {
			return errMismatch
		}
	}
	if b[2]&(flagTC>>8) != 0 {
		return errTruncated
	}
	off := headerLen + n
	total := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	for i := 0; i < total; i++ {
		var rr rrInfo
		var err error
		if off, err = skipRR(b, off, &rr); err != nil {
			return fmt.Errorf("%w: record %d: %w", errMalformed, i, err)
		}
	}
	return nil
}

// newItem builds a cache entry from an upstream reply that passed
// checkReply. It strips OPT, forces the question to its lowercase form,
// sets RA, clamps TTLs and decides the lifetime. ttl 0 means "answer, but
// do not cache".
func newItem(b []byte, now time.Time, pol ttlPolicy) (*item, error) {
	wire, rcode, err := stripOPT(b)
	if err != nil {
		return nil, err
	}
	if len(wire) > minUDPSize && uncompressed(wire) {
		// An upstream that does not compress names makes replies that
		// truncate sooner than they need to. Only replies that may be
		// truncated for some client are worth the repack.
		wire, err = compress(wire)
		if err != nil {
			return nil, err
		}
	}
	// Lowercase the question name: entries are shared by every case.
	qend, _ := skipName(wire, headerLen)
	for i := headerLen; i < qend; i++ {
		if c := wire[i]; 'A' <= c && c <= 'Z' {
			wire[i] = c + 'a' - 'A'
		}
	}
	wire = compactOwners(wire, qend)
	an := int(binary.BigEndian.Uint16(wire[6:]))
	ns := int(binary.BigEndian.Uint16(wire[8:]))
	ar := int(binary.BigEndian.Uint16(wire[10:]))
	total := an + ns + ar
	if cap(wire) != len(wire)+2*total {
		// Repacked or compacted: make the entry's single allocation
		// (wire, then the TTL offsets) here, of the size it needs;
		// stripOPT's own copy already has that shape.
		wire = append(make([]byte, 0, len(wire)+2*total), wire...)
	}
	offs := wire[len(wire):cap(wire)]
	// Clear TC/AA, set RA: the client talks to a recursive service.
	wire[2] &^= (flagTC | flagAA) >> 8
	wire[3] |= flagRA
	it := &item{wire: wire, rcode: rcode, stored: monoNanos(now)}
	off := qend + 4
	minAnswer := uint32(1<<32 - 1)
	var soaTTL, soaMin uint32
	haveSOA := false
	for i := 0; i < total; i++ {
		var rr rrInfo
		if off, err = skipRR(wire, off, &rr); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		ttl := rr.ttl
		if ttl > 1<<31-1 { // RFC 2181: treat as zero
			ttl = 0
		}
		if i < an && ttl < minAnswer {
			minAnswer = ttl
		}
		if i >= an && i < an+ns && rr.rtype == typeSOA && rr.rdataLen >= 22 && !haveSOA {
			haveSOA = true
			soaTTL = ttl
			soaMin = binary.BigEndian.Uint32(wire[rr.rdataAt+rr.rdataLen-4:])
		}
		binary.BigEndian.PutUint16(offs[2*i:], uint16(rr.ttlAt))
		// The TTL field holds the RFC 2181 value until clamped below.
		binary.BigEndian.PutUint32(wire[rr.ttlAt:], ttl)
	}
	// clampTTLs applies f to every record's TTL in place.
	clampTTLs := func(f func(uint32) uint32) {
		for i := 0; i+1 < len(offs); i += 2 {
			at := binary.BigEndian.Uint16(offs[i:])
			binary.BigEndian.PutUint32(wire[at:], f(binary.BigEndian.Uint32(wire[at:])))
		}
	}
	switch {
	case rcode == rcodeSuccess && an > 0:
		life := clamp(minAnswer, pol.min, pol.max)
		if minAnswer == 0 && pol.min == 0 {
			life = 0
		}
		clampTTLs(func(t uint32) uint32 { return clamp(t, pol.min, pol.max) })
		it.ttl = life
	case rcode == rcodeSuccess || rcode == rcodeNXDomain:
		// NODATA or NXDOMAIN: cacheable only with an SOA (RFC 2308 §5),
		// for min(SOA TTL, SOA MINIMUM), capped.
		if !haveSOA {
			it.ttl = 0
			break
		}
		neg := min(soaTTL, soaMin, pol.negMax)
		clampTTLs(func(t uint32) uint32 { return min(t, neg) })
		it.ttl = neg
	case rcode == rcodeServFail:
		it.ttl = pol.servfailTTL
	default:
		it.ttl = 0
	}
	// Whatever is passed on (error replies, uncacheable negatives) never
	// carries a TTL above the cap.
	clampTTLs(func(t uint32) uint32 { return clamp(t, 0, pol.max) })
	return it, nil
}

func clamp(v, lo, hi uint32) uint32 {
	if v < lo {
		v = lo
	}
	if hi > 0 && v > hi {
		v = hi
	}
	return v
}

// stripOPT returns a copy of b without its OPT record, and the full
// (extended) rcode. The copy has spare capacity for newItem's TTL offsets
// (two bytes per record) so the entry needs no second allocation. When the OPT record is the last one (the usual case)
// it is cut off; otherwise miekg/dns repacks the message, because later
// compression pointers could point past the cut.
func stripOPT(b []byte) ([]byte, int, error) {
	if len(b) < headerLen {
		return nil, 0, errShort
	}
	rcode := int(b[3] & 0xF)
	qend, err := skipName(b, headerLen)
	if err != nil || qend+4 > len(b) {
		return nil, 0, errBadName
	}
	an := int(binary.BigEndian.Uint16(b[6:]))
	ns := int(binary.BigEndian.Uint16(b[8:]))
	ar := int(binary.BigEndian.Uint16(b[10:]))
	off := qend + 4
	optStart, optEnd, optIdx := -1, -1, -1
	for i := 0; i < an+ns+ar; i++ {
		var rr rrInfo
		start := off
		if off, err = skipRR(b, off, &rr); err != nil {
			return nil, 0, fmt.Errorf("record %d: %w", i, err)
		}
		if i >= an+ns && rr.rtype == typeOPT {
			if optStart >= 0 {
				return nil, 0, errTwoOPT
			}
			optStart, optEnd, optIdx = start, off, i
			rcode |= int(rr.ttl>>24) << 4
		}
	}
	if optStart < 0 {
		return append(make([]byte, 0, off+2*(an+ns+ar)), b[:off]...), rcode, nil
	}
	if optIdx == an+ns+ar-1 && optEnd == off {
		w := append(make([]byte, 0, optStart+2*(an+ns+ar-1)), b[:optStart]...)
		binary.BigEndian.PutUint16(w[10:], uint16(ar-1))
		return w, rcode, nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, 0, fmt.Errorf("unpack reply: %w", err)
	}
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	m.Rcode = rcode & 0xF
	m.Compress = true
	w, err := m.Pack()
	if err != nil {
		return nil, 0, fmt.Errorf("repack reply: %w", err)
	}
	return w, rcode, nil
}

// appendReply appends the answer for q built from the entry: a copy of the
// wire with the client's ID, RD/CD bits and question case, TTLs decremented
// by the entry's age (or set to staleTTL when staleTTL > 0), an OPT when
// the client sent one, and truncation to maxSize.
func (it *item) appendReply(dst []byte, q *query, now time.Time, staleTTL uint32, maxSize int) []byte {
	start := len(dst)
	dst = append(dst, it.wire...)
	d := dst[start:]
	d[0], d[1] = byte(q.id>>8), byte(q.id)
	const rd = byte(flagRD >> 8) // RD is in the high flag byte, CD in the low one
	d[2] = d[2]&^rd | byte(q.flags>>8)&rd
	d[3] = d[3]&^byte(flagCD) | byte(q.flags)&byte(flagCD)
	if q.flags&flagAD == 0 && !q.do {
		// RFC 6840 §5.8: AD only for clients that asked with AD or DO.
		d[3] &^= byte(flagAD)
	}
	copy(d[headerLen:], q.raw[headerLen:q.qEnd-4])
	var age uint32
	if staleTTL == 0 {
		if a := monoNanos(now) - it.stored; a > 0 {
			age = uint32(a / int64(time.Second))
		}
	}
	offs := it.ttlOffsets()
	for i := 0; i+1 < len(offs); i += 2 {
		at := binary.BigEndian.Uint16(offs[i:])
		ttl := staleTTL
		if staleTTL == 0 {
			ttl = 0
			if t := binary.BigEndian.Uint32(it.wire[at:]); t > age {
				ttl = t - age
			}
		}
		binary.BigEndian.PutUint32(d[at:], ttl)
	}
	optLen := 0
	if q.edns {
		optLen = optRRLen
	}
	if maxSize > 0 && len(d)+optLen > maxSize {
		dst = dst[:start+truncateRRsets(d, maxSize-optLen)]
	}
	if q.edns {
		dst = appendOPT(dst, it.rcode, q.do)
		d = dst[start:]
		binary.BigEndian.PutUint16(d[10:], binary.BigEndian.Uint16(d[10:])+1)
	}
	return dst
}

// uncompressed reports whether some record's owner name is spelled out
// rather than pointing back (the root name aside).
func uncompressed(w []byte) bool {
	off, err := skipName(w, headerLen)
	if err != nil {
		return false
	}
	off += 4
	total := int(binary.BigEndian.Uint16(w[6:])) + int(binary.BigEndian.Uint16(w[8:])) + int(binary.BigEndian.Uint16(w[10:]))
	for i := 0; i < total; i++ {
		if off < len(w) && w[off] != 0 && w[off]&0xC0 == 0 {
			return true
		}
		if off, err = skipRR(w, off, nil); err != nil {
			return false
		}
	}
	return false
}

// compactOwners replaces, in place, record owner names that spell out the
// question name with a pointer to it, for replies of only A and AAAA
// records (no names inside their data) whose owners are all the question:
// the usual answer of an upstream that does not compress (miekg/dns
// servers by default), where the spelled-out owner would double the cache
// entry and the reply. Anything else is returned unchanged; compress
// handles the large replies where compression decides truncation.
func compactOwners(w []byte, qend int) []byte {
	if binary.BigEndian.Uint16(w[4:]) != 1 || qend < headerLen+2 || qend+4 > len(w) {
		return w
	}
	qname := w[headerLen:qend]
	total := int(binary.BigEndian.Uint16(w[6:])) + int(binary.BigEndian.Uint16(w[8:])) + int(binary.BigEndian.Uint16(w[10:]))
	spelled := 0
	off := qend + 4
	for range total {
		var rr rrInfo
		end, err := skipRR(w, off, &rr)
		if err != nil || (rr.rtype != typeA && rr.rtype != typeAAAA) {
			return w
		}
		switch owner := w[off : off+rr.nameLen]; {
		case len(owner) == 2 && owner[0] == 0xC0 && owner[1] == headerLen:
		case string(owner) == string(qname):
			spelled++
		default:
			return w // another name, or a pointer that moving would break
		}
		off = end
	}
	if spelled == 0 || off != len(w) {
		return w
	}
	// Every pointer targets the question, which does not move.
	dst, src := qend+4, qend+4
	for range total {
		end, _ := skipRR(w, src, nil)
		rest := src + len(qname)
		if w[src] == 0xC0 {
			rest = src + 2
		}
		w[dst], w[dst+1] = 0xC0, headerLen
		dst += 2
		dst += copy(w[dst:], w[rest:end])
		src = end
	}
	return w[:dst]
}

// compress repacks w with name compression.
func compress(w []byte) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(w); err != nil {
		return nil, fmt.Errorf("unpack reply: %w", err)
	}
	m.Compress = true
	out, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("repack reply: %w", err)
	}
	return out, nil
}
