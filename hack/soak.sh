#!/usr/bin/env bash
# make soak: run bin/resolver for SOAK_DURATION (default 600 s) at a fixed
# SOAK_QPS (default 2000 queries/s) and print its RSS and goroutines every
# SOAK_INTERVAL (default 30 s); both must stay flat. Not part of make test.
#
# The traffic mixes a hot set (50 names, A and AAAA: cache hits) with a long
# tail of 50,000 names cycled over and over, more than the default cache of
# 10,000 entries holds, so eviction, expiry (the upstream gives TTL 20 s),
# refetch and socket reuse all run the whole time. Goroutines come from the
# resolver's /metrics (go_goroutines); RSS from /proc/PID/status.
#
# Pass/fail: after a warm-up of two intervals, RSS may grow by at most
# max(2 MiB, 15 %) and goroutines by at most 20 up to the end; dnsperf must
# lose no query.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${SOAK_DURATION:-600}
QPS=${SOAK_QPS:-2000}
INTERVAL=${SOAK_INTERVAL:-30}
ADDR=127.53.1.1
UPSTREAM=127.53.1.10
PORT=10053
HEALTH=$ADDR:18053

for t in dnsperf dig curl; do
  command -v "$t" >/dev/null || { echo "soak: $t missing (make deps / apt-get install dnsperf bind9-dnsutils curl)" >&2; exit 1; }
done
[ -x bin/resolver ] || { echo "soak: bin/resolver missing (make soak builds it)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/dnsguard-soak.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# Everything printed also goes to the report page (SOAK_OUT, default
# docs/soak.md, written at the end) so the figures sit beside
# docs/benchmarks.md.
OUT=${SOAK_OUT:-docs/soak.md}
exec > >(tee "$WORK/soak.out") 2>&1

echo "soak: building the upstream (test/bench/authdns)"
go build -o "$WORK/authdns" ./test/bench/authdns
"$WORK/authdns" --listen="$UPSTREAM:$PORT" --ttl=20 >"$WORK/authdns.log" 2>&1 &
pids+=($!)

"$ROOT/bin/resolver" --listen="$ADDR:$PORT" --upstream="$UPSTREAM:$PORT" --health-listen="$HEALTH" \
  --log-level=warn >"$WORK/resolver.log" 2>&1 &
rpid=$!
pids+=("$rpid")

for i in $(seq 1 100); do
  dig +short +time=1 +tries=1 -p "$PORT" @"$ADDR" ready.soak.example A 2>/dev/null | grep -q . && break
  [ "$i" -eq 100 ] && { echo "soak: resolver did not answer in 10 s; its log:"; cat "$WORK/resolver.log"; exit 1; }
  sleep 0.1
done

awk 'BEGIN {
  for (i = 1; i <= 100000; i++) {
    if (i % 2) printf "hot%d.soak.example %s\n", i % 50, (i % 4 == 1) ? "A" : "AAAA"
    else printf "tail%d.soak.example %s\n", (i / 2) % 50000, (i % 4 == 0) ? "A" : "AAAA"
  }
}' >"$WORK/queries.txt"

echo "soak: $DURATION s at $QPS queries/s against bin/resolver (pid $rpid) on $ADDR:$PORT"
dnsperf -s "$ADDR" -p "$PORT" -d "$WORK/queries.txt" -l "$DURATION" -Q "$QPS" -c 8 -q 500 >"$WORK/dnsperf.txt" 2>&1 &
dpid=$!
pids+=("$dpid")

goroutines() {
  curl -fsS --max-time 2 "http://$HEALTH/metrics" 2>/dev/null | awk '$1 == "go_goroutines" {print $2; found = 1} END {if (!found) print "n/a"}'
}
rss_kib() { awk '$1 == "VmRSS:" {print $2}' "/proc/$rpid/status"; }

printf '%8s %10s %10s %11s %8s\n' elapsed RSS_MiB peak_MiB goroutines threads
start=$(date +%s)
samples=()
while kill -0 "$dpid" 2>/dev/null; do
  kill -0 "$rpid" 2>/dev/null || { echo "soak: FAIL: resolver exited; its log:"; cat "$WORK/resolver.log"; exit 1; }
  now=$(($(date +%s) - start))
  rss=$(rss_kib)
  hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$rpid/status")
  thr=$(awk '$1 == "Threads:" {print $2}' "/proc/$rpid/status")
  gr=$(goroutines)
  awk -v t="${now}s" -v r="$rss" -v h="$hwm" -v g="$gr" -v n="$thr" 'BEGIN {printf "%8s %10.1f %10.1f %11s %8s\n", t, r / 1024, h / 1024, g, n}'
  samples+=("$rss $gr")
  # Sleep in short steps so the loop ends soon after dnsperf.
  for _ in $(seq 1 "$INTERVAL"); do kill -0 "$dpid" 2>/dev/null || break; sleep 1; done
done
wait "$dpid" || true
final_rss=$(rss_kib)
final_gr=$(goroutines)
awk -v r="$final_rss" -v g="$final_gr" 'BEGIN {printf "%8s %10.1f %10s %11s\n", "end", r / 1024, "", g}'

echo "soak: dnsperf summary"
sed -n '/Queries sent/,/Latency StdDev/p' "$WORK/dnsperf.txt"

passed=0 failed=0
check() { # ok description
  if [ "$1" = 1 ]; then passed=$((passed + 1)); echo "soak: PASS $2"; else failed=$((failed + 1)); echo "soak: FAIL $2"; fi
}
lost=$(awk '/Queries lost:/ {print $3; exit}' "$WORK/dnsperf.txt")
sent=$(awk '/Queries sent:/ {print $3; exit}' "$WORK/dnsperf.txt")
check "$([ -n "$sent" ] && [ "$sent" -gt 0 ] && echo 1)" "dnsperf sent ${sent:-0} queries"
check "$([ "${lost:-x}" = 0 ] && echo 1)" "no lost queries (lost: ${lost:-unknown})"

if [ ${#samples[@]} -lt 3 ]; then
  check 0 "enough samples for a flatness check (${#samples[@]}; raise SOAK_DURATION)"
else
  read -r base_rss base_gr <<<"${samples[2]}"
  allow=$((base_rss * 15 / 100))
  [ "$allow" -lt 2048 ] && allow=2048
  check "$([ "$final_rss" -le $((base_rss + allow)) ] && echo 1)" \
    "RSS flat: $((base_rss / 1024)) MiB after warm-up, $((final_rss / 1024)) MiB at the end (allowed +$((allow / 1024)) MiB)"
  if [ "$base_gr" = n/a ] || [ "$final_gr" = n/a ]; then
    check 0 "goroutines observable: /metrics on $HEALTH has no go_goroutines"
  else
    check "$([ "${final_gr%.*}" -le $((${base_gr%.*} + 20)) ] && echo 1)" \
      "goroutines flat: $base_gr after warm-up, $final_gr at the end (allowed +20)"
  fi
fi
echo "soak: $passed passed, $failed failed"
write_page() {
  {
    echo "# Resolver soak"
    echo
    echo "<!-- Generated by hack/soak.sh (make soak); do not edit by hand. -->"
    echo
    echo "- **Command:** \`make soak\` (SOAK_DURATION=$DURATION SOAK_QPS=$QPS SOAK_INTERVAL=$INTERVAL)"
    echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- **Machine:** $(uname -sr), $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- **Result:** $passed passed, $failed failed (RSS and goroutines must stay flat after warm-up; dnsperf must lose no query)"
    echo
    echo '```'
    cat "$WORK/soak.out"
    echo '```'
  } >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}
write_page
echo "soak: report written to $OUT"
[ "$failed" -eq 0 ]
