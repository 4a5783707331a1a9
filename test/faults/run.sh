#!/usr/bin/env bash
# make faults-test: fault-injection tests against the built binaries
# (bin/resolver, bin/webhook) on loopback: upstream packet loss, outages,
# slow and garbage upstreams, resource growth, resolver restart under load,
# webhook certificate rotation and hostile input under load.
#
# Builds bin/ with `make build` when a binary is missing, then runs
# `go test -tags faults` (the tests start and stop every process they use)
# and prints `N passed, M failed`. FAULTS_RUN=regexp selects tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

for b in resolver webhook certs; do
  if [ ! -x "bin/$b" ]; then
    echo "faults: bin/$b missing; running make build"
    make build
    break
  fi
done

out=$(mktemp /tmp/dnsguard-faults.XXXXXX)
trap 'rm -f "$out"' EXIT

echo "faults: go test -tags faults ./test/faults/ (timeout 4m)"
set +e
go test -tags faults -count=1 -v -timeout 4m ${FAULTS_RUN:+-run "$FAULTS_RUN"} ./test/faults/... 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e

# Count top-level tests only (subtests are indented).
passed=$(grep -c '^--- PASS' "$out" || true)
failed=$(grep -c '^--- FAIL' "$out" || true)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # build failure, panic or timeout: no --- FAIL line
fi
echo "faults: $passed passed, $failed failed"
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "faults: FAIL"
  exit 1
fi
echo "faults: PASS"
