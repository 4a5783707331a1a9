#!/usr/bin/env bash
# make sidecar-resources: measure what the injected resolver sidecar needs and
# write docs/sidecar-resources.md (SIDECARRES_OUT). Needs root (it creates a
# cgroup v1 cpu controller under /sys/fs/cgroup/cpu and removes it again),
# dnsmasq and dnsperf. The measurement itself is test/bench/sidecarres:
# peak RSS of bin/resolver under a miss flood, and lookup latency of bursts
# of cache misses with cpu.cfs_quota_us at each candidate CPU limit.
# Extra arguments go to sidecarres (e.g. --limits=unlimited,200m --bursts=20).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh sidecar-resources
./hack/install-deps.sh bench
[ -d /sys/fs/cgroup/cpu ] || die "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
mkdir -p bin
[ -x bin/resolver ] || CGO_ENABLED=0 go build -o bin/resolver ./cmd/resolver
go build -o bin/sidecarres ./test/bench/sidecarres
OUT=${SIDECARRES_OUT:-docs/sidecar-resources.measured.md}
{
  echo "command: hack/sidecar-resources.sh $*"
  echo
  bin/sidecarres --resolver=bin/resolver --dnsmasq="$(command -v dnsmasq)" --dnsperf="$(command -v dnsperf)" "$@"
} | tee "$OUT"
log "written to $OUT"
