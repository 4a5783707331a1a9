package resolver

import (
	"encoding/binary"
	"errors"
)

// This file holds the minimal DNS wire parsing of the hot path. A full
// miekg/dns Unpack+Pack costs several microseconds per query; answering a
// cache hit only needs the header, the question and the OPT record, so the
// query is walked in place and the cached answer is patched in place.

const (
	headerLen = 12

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagAD = 1 << 5
	flagCD = 1 << 4

	typeA     = 1
	typeNS    = 2
	typeCNAME = 5
	typeSOA   = 6
	typeHINFO = 13
	typeTXT   = 16
	typeAAAA  = 28
	typeOPT   = 41
	typeIXFR  = 251
	typeAXFR  = 252
	typeMAILB = 253
	typeMAILA = 254
	typeANY   = 255

	classIN  = 1
	classANY = 255

	rcodeSuccess  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
	rcodeBadVers  = 16

	// ourUDPSize is the EDNS0 payload size advertised to clients and
	// upstreams (the DNS flag day 2020 value, avoids IP fragmentation).
	ourUDPSize = 1232
	// minUDPSize is the limit for clients without EDNS0 (RFC 1035).
	minUDPSize = 512
	maxNameLen = 255
)

var (
	errShort       = errors.New("message too short")
	errBadName     = errors.New("malformed name")
	errBadRR       = errors.New("malformed resource record")
	errTwoOPT      = errors.New("more than one OPT record")
	errQDCount     = errors.New("question count is not 1")
	errNotResponse = errors.New("not a response")
)

// query is a client query parsed just enough to answer it. Its fields
// reference raw; nothing is copied.
type query struct {
	raw     []byte
	id      uint16
	flags   uint16
	qEnd    int // end of the question section
	qtype   uint16
	qclass  uint16
	edns    bool
	ednsVer uint8
	do      bool
	udpSize int // client's UDP limit: 512 without EDNS0, else its payload size
	// questionOK is true when the question section parsed, so error
	// replies may echo it.
	questionOK bool
}

func (q *query) opcode() int { return int(q.flags>>11) & 0xF }
func (q *query) cd() bool    { return q.flags&flagCD != 0 }
func (q *query) qname() []byte {
	return q.raw[headerLen : q.qEnd-4]
}

// parseQuery fills q from b. A nil error with q.questionOK means a
// well-formed query. errShort and errNotResponse mean "send nothing".
// Any other error means FORMERR.
func parseQuery(b []byte, q *query) error {
	*q = query{raw: b}
	if len(b) < headerLen {
		return errShort
	}
	q.id = binary.BigEndian.Uint16(b)
	q.flags = binary.BigEndian.Uint16(b[2:])
	if q.flags&flagQR != 0 {
		return errNotResponse
	}
	qd := binary.BigEndian.Uint16(b[4:])
	an := binary.BigEndian.Uint16(b[6:])
	ns := binary.BigEndian.Uint16(b[8:])
	ar := binary.BigEndian.Uint16(b[10:])
	// QDCOUNT≠1 is FORMERR, but the rest is still walked so that the error
	// reply carries an OPT record when the query had one (RFC 6891 §7).
	var qdErr error
	if qd != 1 {
		qdErr = errQDCount
	}
	off := headerLen
	if qd == 1 {
		// The question name: plain labels only, compression cannot point
		// anywhere useful this early in a message.
		for {
			if off >= len(b) {
				return errBadName
			}
			l := int(b[off])
			if l == 0 {
				off++
				break
			}
			if l&0xC0 != 0 {
				return errBadName
			}
			off += 1 + l
			if off-headerLen > maxNameLen-1 {
				return errBadName
			}
		}
		if off+4 > len(b) {
			return errBadName
		}
		q.qtype = binary.BigEndian.Uint16(b[off:])
		q.qclass = binary.BigEndian.Uint16(b[off+2:])
		off += 4
		q.qEnd = off
		q.questionOK = true
	} else {
		for i := 0; i < int(qd); i++ {
			var err error
			if off, err = skipName(b, off); err != nil {
				return err
			}
			if off += 4; off > len(b) {
				return errBadName
			}
		}
	}
	q.udpSize = minUDPSize
	// Answer and authority records are not expected in a query; skip
	// them so an OPT in the additional section is still found.
	for i := 0; i < int(an)+int(ns); i++ {
		var err error
		if off, err = skipRR(b, off, nil); err != nil {
			return err
		}
	}
	for i := 0; i < int(ar); i++ {
		var rr rrInfo
		var err error
		if off, err = skipRR(b, off, &rr); err != nil {
			return err
		}
		if rr.rtype != typeOPT {
			continue
		}
		if q.edns || rr.nameLen != 1 {
			return errTwoOPT
		}
		q.edns = true
		if rr.class > minUDPSize {
			q.udpSize = int(rr.class)
		}
		q.ednsVer = uint8(rr.ttl >> 16)
		q.do = rr.ttl&0x8000 != 0
	}
	return qdErr
}

// rrInfo describes one resource record found by skipRR.
type rrInfo struct {
	start    int
	nameLen  int // bytes of the owner name on the wire
	rtype    uint16
	class    uint16
	ttl      uint32
	ttlAt    int
	rdataAt  int
	rdataLen int
}

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(b []byte, off int) (int, error) {
	n := 0
	for {
		if off >= len(b) {
			return 0, errBadName
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(b) {
				return 0, errBadName
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errBadName
		}
		off += 1 + l
		n += 1 + l
		if n > maxNameLen {
			return 0, errBadName
		}
	}
}

// skipRR returns the offset after the record at off, describing it in rr
// when rr is not nil.
func skipRR(b []byte, off int, rr *rrInfo) (int, error) {
	start := off
	off, err := skipName(b, off)
	if err != nil {
		return 0, err
	}
	if off+10 > len(b) {
		return 0, errBadRR
	}
	rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
	end := off + 10 + rdlen
	if end > len(b) {
		return 0, errBadRR
	}
	if rr != nil {
		*rr = rrInfo{
			start:    start,
			nameLen:  off - start,
			rtype:    binary.BigEndian.Uint16(b[off:]),
			class:    binary.BigEndian.Uint16(b[off+2:]),
			ttl:      binary.BigEndian.Uint32(b[off+4:]),
			ttlAt:    off + 4,
			rdataAt:  off + 10,
			rdataLen: rdlen,
		}
	}
	return end, nil
}

// appendKey appends the cache key of a question: the lowercased wire name,
// type, class and the DO and CD bits, which change what an upstream returns.
func appendKey(dst, qname []byte, qtype, qclass uint16, do, cd bool) []byte {
	for _, c := range qname {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	var bits byte
	if do {
		bits |= 1
	}
	if cd {
		bits |= 2
	}
	return append(dst, byte(qtype>>8), byte(qtype), byte(qclass>>8), byte(qclass), bits)
}

// appendOPT appends a minimal OPT record (no options).
func appendOPT(dst []byte, extRcode int, do bool) []byte {
	var fl byte
	if do {
		fl = 0x80
	}
	return append(dst, 0, 0, typeOPT, byte(ourUDPSize>>8), byte(ourUDPSize&0xFF),
		byte(extRcode>>4), 0, fl, 0, 0, 0)
}

// appendErrorReply appends a reply carrying rcode and no records, echoing
// the question when it parsed and an OPT when the client sent one.
func appendErrorReply(dst []byte, q *query, rcode int) []byte {
	flags := flagQR | flagRA | q.flags&(0xF<<11|flagRD|flagCD) | uint16(rcode&0xF)
	dst = append(dst, byte(q.id>>8), byte(q.id), byte(flags>>8), byte(flags), 0, 0, 0, 0, 0, 0, 0, 0)
	if q.questionOK {
		dst = append(dst, q.raw[headerLen:q.qEnd]...)
		dst[5] = 1
	}
	if q.edns {
		// Also without a question (QDCOUNT≠1): RFC 6891 §7.
		dst = appendOPT(dst, rcode, q.do)
		dst[11] = 1
	}
	return dst
}

// appendANYReply appends the RFC 8482 answer to a query for ANY: one
// synthesized HINFO record instead of everything the name owns.
func appendANYReply(dst []byte, q *query) []byte {
	dst = appendErrorReply(dst, q, rcodeSuccess)
	dst[7] = 1 // ANCOUNT
	rr := []byte{0xC0, headerLen, 0, typeHINFO, byte(q.qclass >> 8), byte(q.qclass),
		0, 0, 0x0E, 0x10, // TTL 3600
		0, 9, 7, 'R', 'F', 'C', '8', '4', '8', '2', 0}
	if q.edns {
		// keep the OPT record last
		opt := append([]byte(nil), dst[q.qEnd:]...)
		dst = append(append(dst[:q.qEnd], rr...), opt...)
	} else {
		dst = append(dst, rr...)
	}
	return dst
}

// optRRLen is the size of the OPT record appendOPT writes.
const optRRLen = 11

// truncateRRsets shortens the reply d (without OPT) to at most limit bytes
// the way RFC 2181 §9 and unbound do: whole RRsets, in order, as many as
// fit. TC is set only when an answer RRset does not fit, or an authority
// RRset of a negative answer (its SOA); the rest of the authority section
// is optional and dropped silently, and the additional section is kept
// only when all of it fits. Cutting after
// a prefix of the records keeps every compression pointer valid: they
// only point backwards. It returns the new length.
func truncateRRsets(d []byte, limit int) int {
	an := int(binary.BigEndian.Uint16(d[6:]))
	ns := int(binary.BigEndian.Uint16(d[8:]))
	ar := int(binary.BigEndian.Uint16(d[10:]))
	off, err := skipName(d, headerLen)
	if err != nil || off+4 > len(d) {
		return len(d)
	}
	off += 4
	negative := an == 0 || d[3]&0xF == rcodeNXDomain
	counts := [3]int{}
	cut, addStart := off, off
	tc := false
	i := 0
	// Records of one RRset are adjacent; find each set's end.
	for i < an+ns+ar {
		sect := section(i, an, ns)
		var first rrInfo
		end, err := skipRR(d, off, &first)
		if err != nil {
			break
		}
		n := 1
		for i+n < an+ns+ar && section(i+n, an, ns) == sect {
			var next rrInfo
			e, err := skipRR(d, end, &next)
			if err != nil || next.rtype != first.rtype || next.class != first.class || !sameName(d, first.start, next.start) {
				break
			}
			end = e
			n++
		}
		if end > limit {
			tc = sect == 0 || (sect == 1 && negative)
			if sect == 2 {
				// The additional section goes whole or not at all.
				counts[2] = 0
				cut = addStart
			}
			break
		}
		if sect < 2 {
			addStart = end
		}
		counts[sect] += n
		cut, off = end, end
		i += n
	}
	binary.BigEndian.PutUint16(d[6:], uint16(counts[0]))
	binary.BigEndian.PutUint16(d[8:], uint16(counts[1]))
	binary.BigEndian.PutUint16(d[10:], uint16(counts[2]))
	if tc {
		d[2] |= flagTC >> 8
	}
	return cut
}

func section(i, an, ns int) int {
	switch {
	case i < an:
		return 0
	case i < an+ns:
		return 1
	}
	return 2
}

// sameName compares the (possibly compressed) names at offsets a and b of
// msg, case-insensitively.
func sameName(msg []byte, a, b int) bool {
	for hops := 0; hops < 64; hops++ {
		var err error
		if a, err = followPtr(msg, a); err != nil {
			return false
		}
		if b, err = followPtr(msg, b); err != nil {
			return false
		}
		la, lb := int(msg[a]), int(msg[b])
		if la != lb || a+1+la > len(msg) || b+1+lb > len(msg) {
			return false
		}
		if la == 0 {
			return true
		}
		for k := 1; k <= la; k++ {
			ca, cb := msg[a+k], msg[b+k]
			if 'A' <= ca && ca <= 'Z' {
				ca += 'a' - 'A'
			}
			if 'A' <= cb && cb <= 'Z' {
				cb += 'a' - 'A'
			}
			if ca != cb {
				return false
			}
		}
		a += 1 + la
		b += 1 + lb
	}
	return false
}

// followPtr resolves compression pointers at off to a label.
func followPtr(msg []byte, off int) (int, error) {
	for hops := 0; ; hops++ {
		if off >= len(msg) || hops > 32 {
			return 0, errBadName
		}
		if msg[off]&0xC0 != 0xC0 {
			if msg[off]&0xC0 != 0 {
				return 0, errBadName
			}
			return off, nil
		}
		if off+1 >= len(msg) {
			return 0, errBadName
		}
		p := int(binary.BigEndian.Uint16(msg[off:]) & 0x3FFF)
		if p >= off {
			return 0, errBadName
		}
		off = p
	}
}
