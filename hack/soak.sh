#!/usr/bin/env bash
# make soak: run bin/resolver for SOAK_DURATION (default 600 s) at a fixed
# SOAK_QPS (default 2000 queries/s) and print its RSS and goroutines every
# SOAK_INTERVAL (default 30 s); both must stay flat. Not part of make test.
# The resolver runs in a cgroup v1 memory controller of its own
# (test/bench/memsample exec, as in make bench; root): each sample shows
# VmRSS, VmHWM, RssAnon and the cgroup's usage (test/bench/memsample sample).
#
# The traffic mixes a hot set (50 names, A and AAAA: cache hits) with a long
# tail of 50,000 names cycled over and over, more than the default cache of
# 10,000 entries holds, so eviction, expiry (the upstream gives TTL 20 s),
# refetch and socket reuse all run the whole time. Goroutines come from the
# resolver's /metrics (go_goroutines).
#
# Pass/fail: after a warm-up of two intervals, private memory (RssAnon: the
# heap and stacks a leak grows; VmRSS also counts executable pages faulting
# back in) may grow by at most max(2 MiB, 15 %) and goroutines by at most 20
# up to the end; dnsperf must lose no query.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. hack/lib.sh soak

DURATION=${SOAK_DURATION:-600}
QPS=${SOAK_QPS:-2000}
INTERVAL=${SOAK_INTERVAL:-30}
ADDR=127.53.1.1
UPSTREAM=127.53.1.10
PORT=10053
HEALTH=$ADDR:18053

./hack/install-deps.sh bench
[ -x bin/resolver ] || die "bin/resolver missing (make soak builds it)"
MEMCG=/sys/fs/cgroup/memory
[ -w "$MEMCG" ] || die "no writable cgroup v1 memory controller at $MEMCG (run as root)"
COMMIT=$(commit_stamp)
CG=$MEMCG/dnsguard-soak-$$

WORK=$(mktemp -d /tmp/dnsguard-soak.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -d "$CG" ] && "$WORK/memsample" rm --cgroup="$CG"
  rm -rf "$WORK"
}
trap cleanup EXIT
# Everything printed also goes to the report page (SOAK_OUT, default
# docs/soak.md, written at the end) so the figures sit beside
# docs/benchmarks.md.
OUT=${SOAK_OUT:-docs/soak.md}
exec > >(tee "$WORK/soak.out") 2>&1

log "building the upstream (test/bench/authdns)"
go build -o "$WORK/authdns" ./test/bench/authdns
go build -o "$WORK/memsample" ./test/bench/memsample
"$WORK/authdns" --listen="$UPSTREAM:$PORT" --ttl=20 >"$WORK/authdns.log" 2>&1 &
pids+=($!)

"$WORK/memsample" exec --cgroup="$CG" -- "$ROOT/bin/resolver" --listen="$ADDR:$PORT" --upstream="$UPSTREAM:$PORT" --health-listen="$HEALTH" \
  --log-level=warn >"$WORK/resolver.log" 2>&1 &
rpid=$!
pids+=("$rpid")

for i in $(seq 1 100); do
  dig +short +time=1 +tries=1 -p "$PORT" @"$ADDR" ready.soak.example A 2>/dev/null | grep -q . && break
  [ "$i" -eq 100 ] && die "resolver did not answer in 10 s; its log: $(cat "$WORK/resolver.log")"
  sleep 0.1
done

awk 'BEGIN {
  for (i = 1; i <= 100000; i++) {
    if (i % 2) printf "hot%d.soak.example %s\n", i % 50, (i % 4 == 1) ? "A" : "AAAA"
    else printf "tail%d.soak.example %s\n", (i / 2) % 50000, (i % 4 == 0) ? "A" : "AAAA"
  }
}' >"$WORK/queries.txt"

log "$DURATION s at $QPS queries/s against bin/resolver (pid $rpid) on $ADDR:$PORT"
dnsperf -s "$ADDR" -p "$PORT" -d "$WORK/queries.txt" -l "$DURATION" -Q "$QPS" -c 8 -q 500 >"$WORK/dnsperf.txt" 2>&1 &
dpid=$!
pids+=("$dpid")

goroutines() {
  curl -fsS --max-time 2 "http://$HEALTH/metrics" 2>/dev/null | awk '$1 == "go_goroutines" {print $2; found = 1} END {if (!found) print "n/a"}'
}
# sample: memsample's columns (vmrss hwm rss_anon pss pss_anon cg_usage
# cg_peak cg_rss cg_cache cg_oom_kills), KiB.
sample() { "$WORK/memsample" sample --pid="$rpid" --cgroup="$CG"; }

printf '%8s %8s %9s %12s %11s %10s %8s\n' elapsed RSS_MiB peak_MiB RssAnon_MiB cgroup_MiB goroutines threads
start=$(date +%s)
samples=()
while kill -0 "$dpid" 2>/dev/null; do
  kill -0 "$rpid" 2>/dev/null || die "resolver exited; its log: $(cat "$WORK/resolver.log")"
  now=$(($(date +%s) - start))
  read -r rss hwm anon _ _ cgu _ <<<"$(sample)"
  thr=$(awk '$1 == "Threads:" {print $2}' "/proc/$rpid/status")
  gr=$(goroutines)
  awk -v t="${now}s" -v r="$rss" -v h="$hwm" -v a="$anon" -v c="$cgu" -v g="$gr" -v n="$thr" \
    'BEGIN {printf "%8s %8.1f %9.1f %12.1f %11.1f %10s %8s\n", t, r / 1024, h / 1024, a / 1024, c / 1024, g, n}'
  samples+=("$anon $gr")
  # Sleep in short steps so the loop ends soon after dnsperf.
  for _ in $(seq 1 "$INTERVAL"); do kill -0 "$dpid" 2>/dev/null || break; sleep 1; done
done
wait "$dpid" || true
read -r final_vmrss final_hwm final_anon _ _ final_cg final_cgpeak _ _ final_oom <<<"$(sample)"
final_gr=$(goroutines)
awk -v r="$final_vmrss" -v h="$final_hwm" -v a="$final_anon" -v c="$final_cg" -v g="$final_gr" \
  'BEGIN {printf "%8s %8.1f %9.1f %12.1f %11.1f %10s\n", "end", r / 1024, h / 1024, a / 1024, c / 1024, g}'
log "memory cgroup peak over the soak: $((final_cgpeak / 1024)) MiB, OOM kills: $final_oom"

log "dnsperf summary"
sed -n '/Queries sent/,/Latency StdDev/p' "$WORK/dnsperf.txt"

lost=$(awk '/Queries lost:/ {print $3; exit}' "$WORK/dnsperf.txt")
sent=$(awk '/Queries sent:/ {print $3; exit}' "$WORK/dnsperf.txt")
check "dnsperf sent ${sent:-0} queries" test "${sent:-0}" -gt 0
check "no lost queries (lost: ${lost:-unknown})" test "${lost:-x}" = 0

if [ ${#samples[@]} -lt 3 ]; then
  fail "enough samples for a flatness check (${#samples[@]}; raise SOAK_DURATION)"
else
  read -r base_anon base_gr <<<"${samples[2]}"
  allow=$((base_anon * 15 / 100))
  [ "$allow" -lt 2048 ] && allow=2048
  check "private memory (RssAnon) flat: $((base_anon / 1024)) MiB after warm-up, $((final_anon / 1024)) MiB at the end (allowed +$((allow / 1024)) MiB)" \
    test "$final_anon" -le $((base_anon + allow))
  if [ "$base_gr" = n/a ] || [ "$final_gr" = n/a ]; then
    fail "goroutines observable: /metrics on $HEALTH has no go_goroutines"
  else
    check "goroutines flat: $base_gr after warm-up, $final_gr at the end (allowed +20)" \
      test "${final_gr%.*}" -le $((${base_gr%.*} + 20))
  fi
fi
write_page() {
  {
    echo "# Resolver soak"
    echo
    echo "<!-- Generated by hack/soak.sh (make soak); do not edit by hand. -->"
    echo
    echo "- **Command:** \`make soak\` (SOAK_DURATION=$DURATION SOAK_QPS=$QPS SOAK_INTERVAL=$INTERVAL)"
    echo "- **Commit:** $COMMIT"
    echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- **Machine:** $(uname -sr), $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- **Result:** $LIB_PASSED passed, $LIB_FAILED failed (private memory and goroutines must stay flat after warm-up; dnsperf must lose no query)"
    echo
    echo '```'
    cat "$WORK/soak.out"
    echo '```'
  } >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}
write_page
log "report written to $OUT"
summary
