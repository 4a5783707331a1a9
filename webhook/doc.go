// Package webhook is dnsguard's mutating admission webhook.
//
// Pods created in an opted-in namespace stall for five seconds on DNS when
// glibc or musl send the A and AAAA queries in parallel from one UDP socket
// and conntrack drops one of them after the DNAT to the cluster DNS Service.
// The webhook rewrites such pods in one of two modes:
//
//   - dnsconfig: dnsPolicy None with a dnsConfig that reproduces ClusterFirst
//     (cluster nameservers, the three cluster search domains) plus
//     ndots:5 timeout:2 attempts:3 single-request-reopen;
//   - sidecar: the same, but with 127.0.0.1 as first nameserver and a small
//     caching resolver injected as a native sidecar that sends A and AAAA on
//     separate sockets, one after the other.
//
// The mode comes from the pod annotation dnsguard.io/mode, else the
// namespace annotation dnsguard.io/default-mode, else the configured default.
// Patched pods carry dnsguard.io/injected so a reinvocation is a no-op.
//
// A review goes through admission.go (decode the review, then the Pod,
// once each), the decision (mutate.go, dnsconfig.go, sidecar.go: pure Go
// over corev1 types) and patch.go, which writes the decision as JSONPatch
// operations against the object the API server sent; body.go reads
// requests under the size limit and byte budget, respond.go writes the
// answers, server.go routes. The webhook never denies a pod: whatever it
// cannot understand is allowed unchanged, with a warning.
package webhook
