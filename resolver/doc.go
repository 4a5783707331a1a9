// Package resolver is dnsguard's caching DNS resolver: a pod's sidecar
// answering its stub resolver on loopback, or (node mode) one cache per
// node on a link-local address. It serves most queries from a bounded
// cache and forwards the rest so that no two upstream queries in flight
// share a UDP socket and A/AAAA for one name go out one after the other
// (serializer.go), so the conntrack race that makes glibc and musl stall
// 5 s after DNAT cannot happen.
//
// The hot path (cache hits) works on wire bytes: the query is parsed just
// enough for its question and OPT record, and the cached packed answer is
// copied and patched (ID, flags, question case, TTLs). miekg/dns is used
// for the rare repack of odd upstream replies, the probe client and tests.
// README.md maps the files.
package resolver
