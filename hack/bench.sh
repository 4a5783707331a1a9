#!/usr/bin/env bash
# make bench: the resolver against unbound, dnsmasq and CoreDNS, and the
# webhook against a minimal standard-library handler, all on loopback;
# writes docs/benchmarks.md. Not part of make test (it takes minutes and its
# figures depend on the machine).
#
# Resolver part: every server is a caching forwarder on its own loopback
# address in front of the same upstream (test/bench/authdns, which
# synthesizes an answer for any name). One server runs at a time, pinned to
# CPU $BENCH_SERVER_CPU; dnsperf and the upstream share CPU $BENCH_CLIENT_CPU.
# Two workloads: cache hits (200 questions repeated after a warm-up) and
# cache misses (unique names, each asked once). The primary figure is the
# server's own CPU time per answered query (user+sys ticks from
# /proc/PID/stat before and after, divided by the queries dnsperf saw
# answered), because one dnsperf process saturates before a fast server does
# and because the machine may be shared: CPU per query is the figure that
# noise from other processes disturbs least.
#
# Memory: every DNS server runs in a cgroup v1 memory controller of its own
# (test/bench/memsample exec, which first drops the server's executable from
# the page cache so that the server pays for it), and is sampled two seconds
# after start and after each workload by test/bench/memsample sample:
# VmRSS/VmHWM, RssAnon, PSS and Pss_Anon (smaps_rollup), and the cgroup's
# usage, peak (max_usage_in_bytes), rss, cache and OOM kills. Needs root
# and /sys/fs/cgroup/memory.
#
# Webhook part: test/bench/webhookload drives bin/webhook and its own floor
# handler over HTTPS (dev certificates from bin/certs) at concurrency 1, 8,
# 32 and 128, over HTTP/1.1 and HTTP/2, then in open loop at half the
# floor's best closed-loop rate, then with a 200 KiB pod; last the webhook
# alone against hostile clients (webhookload hostile: peak RSS, /healthz).
#
# Environment: BENCH_DURATION (seconds per server and workload, default 12),
# BENCH_WEBHOOK_DURATION (per concurrency step, default 4s), BENCH_NICE
# (niceness of every measured process and load generator, default -10 as
# root, so that on a shared machine the pinned processes keep their CPU for
# the few minutes of the run; 0 to turn off), BENCH_OUT
# (default docs/benchmarks.md), BENCH_SERVERS (default "unbound dnsmasq coredns
# dnsguard dnsguard-fresh"), BENCH_SKIP_WEBHOOK=1 / BENCH_SKIP_RESOLVER=1,
# BENCH_TCP_SECONDS (the TCP-upstream TIME-WAIT run, default 30; 0 skips it),
# BENCH_HOSTILE_DURATION (default 15s).
#
# dnsguard-fresh is the resolver with --udp-socket-reuse=1 (a fresh socket
# on a random port for every upstream query) instead of its default pool
# (a random idle socket per query, 8 queries each): the cost of the port
# strategy, measured side by side. The TCP-upstream run sends 2,000 unique misses/s for
# BENCH_TCP_SECONDS through the resolver with --force-tcp and counts sockets
# in TIME-WAIT before and after (`ss`): connection reuse keeps it flat.
#
# Tools: the Debian packages of `hack/install-deps.sh bench` (dnsperf,
# unbound, ...) and CoreDNS from the tool cache (hack/build-tools.sh coredns,
# the same binary the e2e cluster runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. hack/lib.sh bench
BIN=$ROOT/bin

DUR=${BENCH_DURATION:-12}
WH_DUR=${BENCH_WEBHOOK_DURATION:-4s}
OUT=${BENCH_OUT:-docs/benchmarks.md}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
NICE=${BENCH_NICE:-$([ "$(id -u)" -eq 0 ] && echo -10 || echo 0)}
MISS_NAMES=${BENCH_MISS_NAMES:-3000000}
PORT=10053 # not 53: other suites may own a wildcard :53 socket on this host
UPSTREAM=127.53.0.10
SERVERS=" ${BENCH_SERVERS:-unbound dnsmasq coredns dnsguard dnsguard-fresh} "
TCP_SECONDS=${BENCH_TCP_SECONDS:-30}
want() { [[ "$SERVERS" == *" $1 "* ]]; }

MEMCG=/sys/fs/cgroup/memory
[ -w "$MEMCG" ] || die "no writable cgroup v1 memory controller at $MEMCG (make bench runs every server in a memory cgroup of its own; run as root)"
# The commit the page names: what was measured.
COMMIT=$(commit_stamp)

WORK=$(mktemp -d /tmp/dnsguard-bench.XXXXXX)
pids=()
cgroups=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${cgroups[@]}"; do [ -d "$p" ] && "$WORK/memsample" rm --cgroup="$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------
./hack/install-deps.sh bench
export PATH=$PATH:/usr/sbin
if want coredns; then ./hack/build-tools.sh coredns; fi
log "building the benchmark helpers"
go build -o "$WORK/authdns" ./test/bench/authdns
go build -o "$WORK/webhookload" ./test/bench/webhookload
go build -o "$WORK/benchreport" ./test/bench/benchreport
go build -o "$WORK/memsample" ./test/bench/memsample

# --- measuring helpers -------------------------------------------------------
# ticks PID: user+sys CPU ticks (fields 14 and 15 of stat(5); the command
# name may hold spaces, so count from its closing parenthesis).
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
clk_tck=$(getconf CLK_TCK)

wait_dns() { # addr port: until the server answers (10 s at most)
  local i
  for i in $(seq 1 100); do
    dig +short +time=1 +tries=1 -p "$2" @"$1" ready.hit.bench.example A 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  log "no DNS answer from $1:$2 after 10 s"
  return 1
}

# dnsperf_field FILE LABEL: the first number after "LABEL:" in dnsperf output.
dnsperf_field() { awk -v l="$2:" '(i = index($0, l)) { split(substr($0, i + length(l)), f, " "); print f[1] + 0; exit }' "$1"; }
dnsperf_max() { sed -n 's/.*Average Latency.*max \([0-9.]*\)).*/\1/p' "$1"; }

SERVERS_TSV=$WORK/resolver.tsv
printf 'server\tworkload\tqps\tsent\tcompleted\tlost\tavg_s\tmax_s\tsd_s\tcpu_ticks\tclk_tck\t%s\t%s\tbinary_bytes\tbinary_note\n' \
  "$("$WORK/memsample" header --prefix=idle_)" "$("$WORK/memsample" header --prefix=end_)" >"$SERVERS_TSV"
COMMANDS=$WORK/commands.txt
: >"$COMMANDS"
note_cmd() { printf '%s\n' "$*" >>"$COMMANDS"; }

# on_client CMD...: run pinned to the client CPU at the benchmark's niceness.
on_client() { taskset -c "$CLIENT_CPU" nice -n "$NICE" "$@"; }

start_bg() { # name cmd...: start pinned to the server CPU, record the PID
  local name=$1
  shift
  # Not through a function: a backgrounded function is a subshell, and $!
  # would be its PID rather than the server's. taskset and nice exec the
  # command, so here $! is the server itself.
  taskset -c "$SERVER_CPU" nice -n "$NICE" "$@" >"$WORK/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stripped_size() { # binary: size after strip (Go binaries built -s -w barely change)
  if strip -o "$WORK/stripped" "$1" 2>/dev/null; then stat -c %s "$WORK/stripped"; else stat -c %s "$1"; fi
}

bench_server() { # name addr binary binary_note cmd...
  local name=$1 addr=$2 binary=$3 note=$4
  shift 4
  local cg=$MEMCG/dnsguard-bench-$$-$name
  log "$name: starting on $addr:$PORT in memory cgroup $cg"
  note_cmd "taskset -c $SERVER_CPU test/bench/memsample exec --cgroup=MEMCG/$name -- $*"
  cgroups+=("$cg")
  start_bg "$name" "$WORK/memsample" exec --cgroup="$cg" -- "$@"
  local pid=$server_pid
  if ! wait_dns "$addr" "$PORT"; then
    fail "$name: starts and answers on $addr:$PORT" "$(cat "$WORK/$name.log" 2>&1)"
    stop_pid "$pid"
    "$WORK/memsample" rm --cgroup="$cg"
    return 0
  fi
  # CPU ticks and memory are read from this PID: it must be the server
  # itself (taskset, nice and memsample exec it, keeping the PID).
  case "$(cat "/proc/$pid/comm")" in
  bash | memsample | taskset | nice) die "$name: PID $pid is $(cat "/proc/$pid/comm"), not the server" ;;
  esac
  sleep 2 # let start-up garbage settle before reading idle RSS
  local idle size
  idle=$("$WORK/memsample" sample --pid="$pid" --cgroup="$cg")
  size=$(stripped_size "$binary")
  # Warm the cache (not measured), then the two measured workloads.
  on_client dnsperf -s "$addr" -p "$PORT" -d "$WORK/hit.txt" -n 2 -c 4 -T 1 >/dev/null 2>&1 || true
  local wl file extra t0 t1 out
  for wl in hit miss; do
    file=$WORK/$wl.txt extra=(-l "$DUR")
    [ "$wl" = miss ] && extra+=(-n 1)
    out=$WORK/$name.$wl.dnsperf
    t0=$(ticks "$pid")
    on_client dnsperf -s "$addr" -p "$PORT" -d "$file" -c 4 -T 1 -q 100 -t 2 "${extra[@]}" >"$out" 2>&1 || true
    t1=$(ticks "$pid")
    if ! kill -0 "$pid" 2>/dev/null; then
      fail "$name: survives the $wl workload"
      return 0
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wl" \
      "$(dnsperf_field "$out" 'Queries per second')" "$(dnsperf_field "$out" 'Queries sent')" \
      "$(dnsperf_field "$out" 'Queries completed')" "$(dnsperf_field "$out" 'Queries lost')" \
      "$(dnsperf_field "$out" 'Average Latency (s)')" "$(dnsperf_max "$out")" \
      "$(dnsperf_field "$out" 'Latency StdDev (s)')" "$((t1 - t0))" "$clk_tck" "$idle" \
      "$("$WORK/memsample" sample --pid="$pid" --cgroup="$cg")" "$size" "$note" >>"$SERVERS_TSV"
    pass "$name $wl: $(dnsperf_field "$out" 'Queries per second') q/s, lost $(dnsperf_field "$out" 'Queries lost'), $((t1 - t0)) ticks"
  done
  stop_pid "$pid"
  "$WORK/memsample" rm --cgroup="$cg"
}

# --- resolver benchmark --------------------------------------------------------
if [ "${BENCH_SKIP_RESOLVER:-}" != 1 ]; then
  # Names under example., not test.: unbound answers test. itself as a
  # locally served RFC 6761 zone and would never forward it.
  log "writing query files ($MISS_NAMES unique names for the miss workload)"
  for i in $(seq 1 100); do printf 'host%d.hit.bench.example A\nhost%d.hit.bench.example AAAA\n' "$i" "$i"; done >"$WORK/hit.txt"
  seq 1 "$MISS_NAMES" | awk '{print "m" $1 ".miss.bench.example A"}' >"$WORK/miss.txt"

  taskset -c "$CLIENT_CPU" nice -n "$NICE" "$WORK/authdns" --listen="$UPSTREAM:$PORT" >"$WORK/authdns.log" 2>&1 &
  pids+=($!)
  note_cmd "taskset -c $CLIENT_CPU test/bench/authdns --listen=$UPSTREAM:$PORT   # the shared upstream"
  wait_dns "$UPSTREAM" "$PORT"
  note_cmd "taskset -c $CLIENT_CPU dnsperf -s ADDR -p $PORT -d hit.txt -n 2 -c 4 -T 1   # warm-up, not measured"
  note_cmd "taskset -c $CLIENT_CPU dnsperf -s ADDR -p $PORT -d hit.txt -c 4 -T 1 -q 100 -t 2 -l $DUR   # cache hits"
  note_cmd "taskset -c $CLIENT_CPU dnsperf -s ADDR -p $PORT -d miss.txt -c 4 -T 1 -q 100 -t 2 -l $DUR -n 1   # cache misses"

  cat >"$WORK/unbound.conf" <<EOF
server:
  interface: 127.53.0.2@$PORT
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  do-ip6: no
  module-config: "iterator"
  qname-minimisation: no
forward-zone:
  name: "."
  forward-addr: $UPSTREAM@$PORT
EOF
  unbound-checkconf "$WORK/unbound.conf" >/dev/null
  { echo "# WORK/unbound.conf:"; sed 's/^/#   /' "$WORK/unbound.conf"; } >>"$COMMANDS"
  want unbound && bench_server unbound 127.53.0.2 "$(command -v unbound)" "dynamic; + libssl, libevent, ..." \
    unbound -d -c "$WORK/unbound.conf"

  want dnsmasq && bench_server dnsmasq 127.53.0.3 "$(command -v dnsmasq)" "dynamic" \
    dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --user=root --pid-file= \
    --listen-address=127.53.0.3 --bind-interfaces --port="$PORT" \
    --server="$UPSTREAM#$PORT" --cache-size=10000 --dns-forward-max=1000

  cat >"$WORK/Corefile" <<EOF
.:$PORT {
    bind 127.53.0.4
    forward . $UPSTREAM:$PORT
    cache 3600
}
EOF
  { echo "# WORK/Corefile:"; sed 's/^/#   /' "$WORK/Corefile"; } >>"$COMMANDS"
  want coredns && bench_server coredns 127.53.0.4 "$BIN/coredns" "static Go" \
    "$BIN/coredns" -conf "$WORK/Corefile" -quiet

  if ! want dnsguard; then
    :
  elif [ -x "$BIN/resolver" ]; then
    bench_server dnsguard 127.53.0.5 "$BIN/resolver" "static Go" \
      "$BIN/resolver" --listen=127.53.0.5:$PORT --upstream=$UPSTREAM:$PORT --health-listen=127.53.0.5:18053
  else
    fail "bin/resolver built (make bench builds it): its rows stay empty"
  fi
  if want dnsguard-fresh && [ -x "$BIN/resolver" ]; then
    bench_server dnsguard-fresh 127.53.0.6 "$BIN/resolver" "static Go" \
      "$BIN/resolver" --listen=127.53.0.6:$PORT --upstream=$UPSTREAM:$PORT --health-listen=127.53.0.6:18054 \
      --udp-socket-reuse=1
  fi

  # TCP upstream: TIME-WAIT sockets before and after a miss flood.
  if [ "$TCP_SECONDS" -gt 0 ] && [ -x "$BIN/resolver" ]; then
    # Only sockets of this run (the machine may be shared with other jobs
    # that open TCP connections): the resolver's side (to the upstream's
    # port) and the upstream's side (from it; authdns, like every miekg/dns
    # server, closes a connection after 128 queries).
    tw() { ss -Htan state time-wait "( dport = :$PORT )" dst "$UPSTREAM" | wc -l; }
    twup() { ss -Htan state time-wait "( sport = :$PORT )" src "$UPSTREAM" | wc -l; }
    rate=2000
    log "dnsguard --force-tcp: $rate misses/s for $TCP_SECONDS s"
    note_cmd "taskset -c $SERVER_CPU bin/resolver --listen=127.53.0.7:$PORT --upstream=$UPSTREAM:$PORT --health-listen=127.53.0.7:18055 --force-tcp"
    note_cmd "taskset -c $CLIENT_CPU dnsperf -s 127.53.0.7 -p $PORT -d tcpmiss.txt -c 4 -T 1 -q 200 -t 2 -Q $rate -l $TCP_SECONDS -n 1   # TIME-WAIT: ss -Htan state time-wait, sport or dport PORT, before and after"
    start_bg dnsguard-tcp "$BIN/resolver" --listen=127.53.0.7:$PORT --upstream=$UPSTREAM:$PORT \
      --health-listen=127.53.0.7:18055 --force-tcp
    tpid=$server_pid
    if wait_dns 127.53.0.7 "$PORT"; then
      seq 1 $((rate * TCP_SECONDS + 1000)) | awk '{print "t" $1 ".tcp.bench.example A"}' >"$WORK/tcpmiss.txt"
      tw0=$(tw) twu0=$(twup)
      on_client dnsperf -s 127.53.0.7 -p "$PORT" -d "$WORK/tcpmiss.txt" -c 4 -T 1 -q 200 -t 2 \
        -Q "$rate" -l "$TCP_SECONDS" -n 1 >"$WORK/tcp.dnsperf" 2>&1 || true
      tw1=$(tw) twu1=$(twup)
      conns=$(ss -Htn state established "( dport = :$PORT )" dst "$UPSTREAM" | wc -l)
      printf 'rate\tseconds\tsent\tcompleted\tlost\ttimewait_before\ttimewait_after\tupstream_timewait_before\tupstream_timewait_after\tupstream_conns\n%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$rate" "$TCP_SECONDS" "$(dnsperf_field "$WORK/tcp.dnsperf" 'Queries sent')" \
        "$(dnsperf_field "$WORK/tcp.dnsperf" 'Queries completed')" "$(dnsperf_field "$WORK/tcp.dnsperf" 'Queries lost')" \
        "$tw0" "$tw1" "$twu0" "$twu1" "$conns" >"$WORK/tcp.tsv"
      pass "TCP upstream: TIME-WAIT resolver side $tw0 -> $tw1, upstream side $twu0 -> $twu1, lost $(dnsperf_field "$WORK/tcp.dnsperf" 'Queries lost'), $conns upstream connections"
    else
      fail "dnsguard --force-tcp: starts and answers"
    fi
    stop_pid "$tpid"
  fi
fi

# --- webhook benchmark -----------------------------------------------------------
WEBHOOK_TSV=$WORK/webhook.tsv
: >"$WEBHOOK_TSV"
REVIEW=test/bench/webhookload/testdata/deployment-pod-review.json
wait_https() { # url: until it answers 200 (10 s at most)
  local i
  for i in $(seq 1 100); do
    curl -fsS --cacert "$WORK/certs/ca.crt" "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
LARGE=test/bench/webhookload/testdata/large-pod-review.json
HOSTILE_TSV=$WORK/hostile.tsv
: >"$HOSTILE_TSV"
# load NAME PROTO PID PORT OUT ARGS...: one webhookload load run.
load() {
  local name=$1 proto=$2 pid=$3 port=$4 out=$5
  shift 5
  on_client "$WORK/webhookload" load --url="https://127.0.0.1:$port/mutate" \
    --ca="$WORK/certs/ca.crt" --label="$name" --proto="$proto" --pid="$pid" --duration="$WH_DUR" "$@" >"$out"
}
# bench_webhook NAME PORT cmd...: closed loop with the 6 KiB and the 200
# KiB pod over HTTP/1.1 and HTTP/2, then (for the floor only once its rates
# are known, see RATE_h1/RATE_h2) the open loop.
bench_webhook() {
  local name=$1 port=$2 proto rate
  shift 2
  note_cmd "taskset -c $SERVER_CPU $*"
  start_bg "$name" "$@"
  local pid=$server_pid
  if ! wait_https "https://127.0.0.1:$port/healthz"; then
    fail "$name: starts and serves /healthz on port $port" "$(cat "$WORK/$name.log" 2>&1)"
    stop_pid "$pid"
    return 0
  fi
  for proto in h1 h2; do
    log "$name over $proto"
    if ! load "$name" "$proto" "$pid" "$port" "$WORK/$name.$proto.tsv" --review="$REVIEW" --concurrency=1,8,32,128 --rate=0; then
      fail "$name over $proto: closed-loop load"
      continue
    fi
    tail -n +2 "$WORK/$name.$proto.tsv" >>"$WEBHOOK_TSV"
    pass "$name over $proto: closed loop at concurrency 1, 8, 32, 128"
    if [ "$name" = floor ]; then
      # Half the floor's best closed-loop rate: the open-loop rate of both.
      rate=$(awk -F'\t' 'NR > 1 && $3 ~ /^c=/ && $6 > m {m = $6} END {printf "%d\n", m / 2}' "$WORK/$name.$proto.tsv")
      [ "${rate:-0}" -ge 1 ] || rate=100
      eval "RATE_$proto=$rate"
    fi
    rate=$(eval echo "\${RATE_$proto:-0}")
    log "$name over $proto: open loop at $rate reviews/s"
    if load "$name" "$proto" "$pid" "$port" "$WORK/$name.$proto.open.tsv" --review="$REVIEW" --concurrency= --rate="$rate" --rate-duration=10s; then
      tail -n +2 "$WORK/$name.$proto.open.tsv" >>"$WEBHOOK_TSV"
      pass "$name over $proto: open loop at $rate reviews/s"
    else
      fail "$name over $proto: open loop at $rate reviews/s"
    fi
    log "$name over $proto: 200 KiB pod"
    if load "$name-large" "$proto" "$pid" "$port" "$WORK/$name.$proto.large.tsv" --review="$LARGE" --concurrency=1,8,32 --rate=0; then
      tail -n +2 "$WORK/$name.$proto.large.tsv" >>"$WEBHOOK_TSV"
      pass "$name over $proto: 200 KiB pod"
    else
      fail "$name over $proto: 200 KiB pod"
    fi
  done
  if [ "$name" = webhook ]; then
    # Hostile clients last: they may leave the process with a larger heap.
    log "$name: hostile clients (64 x 3 MiB reviews + 128 stalled connections, ${BENCH_HOSTILE_DURATION:-15s})"
    if on_client "$WORK/webhookload" hostile --url="https://127.0.0.1:$port" --ca="$WORK/certs/ca.crt" \
      --review="$REVIEW" --label="$name" --pid="$pid" --big=64 --stalled=128 \
      --duration="${BENCH_HOSTILE_DURATION:-15s}" >"$WORK/$name.hostile.tsv"; then
      if [ -s "$HOSTILE_TSV" ]; then tail -n +2 "$WORK/$name.hostile.tsv" >>"$HOSTILE_TSV"; else cat "$WORK/$name.hostile.tsv" >"$HOSTILE_TSV"; fi
      pass "$name: hostile clients"
    else
      fail "$name: hostile clients"
    fi
  fi
  stop_pid "$pid"
}
if [ "${BENCH_SKIP_WEBHOOK:-}" != 1 ]; then
  [ -x "$BIN/certs" ] || die "bin/certs missing (make bench builds it)"
  "$BIN/certs" controller --once --out-dir="$WORK/certs" --hosts=127.0.0.1,localhost --log-level=warn
  note_cmd "bin/certs controller --once --out-dir=CERTS --hosts=127.0.0.1,localhost"
  note_cmd "taskset -c $CLIENT_CPU test/bench/webhookload load --url=https://127.0.0.1:PORT/mutate --ca=CERTS/ca.crt --review=$REVIEW --proto=h1|h2 --pid=SERVER_PID --duration=$WH_DUR --concurrency=1,8,32,128 --rate=0"
  note_cmd "taskset -c $CLIENT_CPU test/bench/webhookload load ... --concurrency= --rate=HALF_OF_FLOOR_BEST --rate-duration=10s   # open loop, floor and webhook at the same rate"
  note_cmd "taskset -c $CLIENT_CPU test/bench/webhookload load ... --review=$LARGE --concurrency=1,8,32 --rate=0"
  note_cmd "taskset -c $CLIENT_CPU test/bench/webhookload hostile --url=https://127.0.0.1:PORT --ca=CERTS/ca.crt --review=$REVIEW --pid=SERVER_PID --big=64 --stalled=128 --duration=${BENCH_HOSTILE_DURATION:-15s}"
  bench_webhook floor 19443 "$WORK/webhookload" floor --listen=127.0.0.1:19443 \
    --tls-cert-file="$WORK/certs/tls.crt" --tls-key-file="$WORK/certs/tls.key"
  if [ -x "$BIN/webhook" ]; then
    bench_webhook webhook 18443 "$BIN/webhook" --listen=127.0.0.1:18443 \
      --tls-cert-file="$WORK/certs/tls.crt" --tls-key-file="$WORK/certs/tls.key" \
      --nameservers=10.96.0.10
  else
    fail "bin/webhook built (make bench builds it): its rows stay empty"
  fi
fi

# --- the page --------------------------------------------------------------------
log "writing $OUT"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$COMMIT"
  # The command as run: the BENCH_ variables that changed it, quoted.
  printf 'command=make bench'
  for v in $(compgen -e | grep '^BENCH_' | sort); do printf ' %s=%q' "$v" "${!v}"; done
  echo
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -srm)"
  echo "go=$(go version | awk '{print $3}')"
  echo "dnsperf=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')"
  echo "unbound=$(unbound -V 2>/dev/null | awk '/^Version/ {print $2}')"
  echo "dnsmasq=$(dnsmasq --version | awk 'NR == 1 {print $3}')"
  v=$([ -x "$BIN/coredns" ] && "$BIN/coredns" -version 2>/dev/null || true)
  echo "coredns=$(awk -F- '/^CoreDNS-/ {print "v" $2; exit}' <<<"$v")"
  echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration=$DUR"
  echo "webhook_duration=$WH_DUR"
  echo "server_cpu=$SERVER_CPU"
  echo "client_cpu=$CLIENT_CPU"
  echo "nice=$NICE"
} >"$WORK/meta.env"
# Paths of this run's scratch directory and checkout mean nothing to a reader.
sed -i -e "s|$WORK|WORK|g" -e "s|$ROOT/||g" "$COMMANDS"
hostile=()
[ -s "$HOSTILE_TSV" ] && hostile=(--hostile="$HOSTILE_TSV")
"$WORK/benchreport" --meta="$WORK/meta.env" --resolver="$SERVERS_TSV" --webhook="$WEBHOOK_TSV" --tcp="$WORK/tcp.tsv" \
  --commands="$COMMANDS" "${hostile[@]}" >"$WORK/benchmarks.md"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/benchmarks.md" "$OUT"
sed -n '/^## Targets/,/^## /p' "$OUT" | sed '$d' >&2

log "page written to $OUT"
summary
