// Package faults holds fault-injection tests for the built dnsguard
// binaries (bin/resolver, bin/webhook): upstream packet loss, outages, slow
// and garbage upstreams, resolver restarts under load, webhook certificate
// rotation and hostile input under load. The tests are behind the build
// tag "faults" because they need the binaries built first; run them with
// test/faults/run.sh (make faults-test).
package faults
