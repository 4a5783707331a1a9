// Package resolver is dnsguard's per-pod caching DNS resolver: it answers
// the pod's stub resolver on loopback, serves most queries from a bounded
// cache, and forwards the rest so that no two upstream queries in flight
// share a UDP socket and A/AAAA for one name go out one after the other
// (the conntrack race that makes glibc and musl stall 5 s after DNAT
// cannot happen).
//
// The hot path (cache hits) works on wire bytes: the query is parsed just
// enough for its question and OPT record, and the cached packed answer is
// copied and patched (ID, flags, question case, TTLs). miekg/dns is used
// for the rare repack of odd upstream replies, the probe client and tests.
package resolver
