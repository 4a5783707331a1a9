#!/usr/bin/env bash
# make faults-test: fault-injection tests against the built binaries
# (bin/resolver, bin/webhook) on loopback: upstream packet loss, outages,
# slow and garbage upstreams, resource growth, resolver restart under load,
# webhook certificate rotation and hostile input under load.
#
# Builds bin/ with `make build` when a binary is missing, then runs
# `go test -tags faults` (the tests start and stop every process they use)
# and prints each top-level test's result and `N passed, M failed`.
# FAULTS_RUN=regexp selects tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
. hack/lib.sh faults-test

for b in resolver webhook certs; do
  if [ ! -x "bin/$b" ]; then
    log "bin/$b missing; running make build"
    make build
    break
  fi
done

out=$(mktemp /tmp/dnsguard-faults.XXXXXX)
trap 'rm -f "$out"' EXIT

log "go test -tags faults ./test/faults/ (timeout 4m)"
set +e
go test -tags faults -count=1 -v -timeout 4m ${FAULTS_RUN:+-run "$FAULTS_RUN"} ./test/faults/... 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e

# One line per top-level test (subtests are indented in go test -v).
while read -r _ result name _; do
  if [ "$result" = PASS: ]; then pass "$name"; else fail "$name"; fi
done < <(grep -E '^--- (PASS|FAIL)' "$out" || true)
if [ "$rc" -ne 0 ] && [ "$LIB_FAILED" -eq 0 ]; then
  fail "go test exited $rc without a failed test (build failure, panic or timeout: see above)"
fi
summary
