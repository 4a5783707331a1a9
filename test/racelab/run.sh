#!/usr/bin/env bash
# The race lab (`make race-lab`, needs root): reproduces the Kubernetes
# "5-second DNS stall" with real glibc and real musl, and measures each
# dnsguard configuration against it.
#
#   pod ns ──veth── node ns (router: DNAT Service IP:53 → random endpoint,
#                            nftables emulation of conntrack insert_failed)
#                     ├─veth── dns1 ns (dnsmasq, test zone)
#                     └─veth── dns2 ns (dnsmasq, test zone)
#
# Every namespace, rule and process lives inside namespaces named
# dg-<id>-{pod,node,dns1,dns2}; they are removed on exit (also on failure), and
# leftovers of aborted runs are removed at start. Nothing is changed in the
# root namespace except /etc/netns/dg-<id>-pod/resolv.conf (which
# `ip netns exec` bind-mounts over /etc/resolv.conf for processes in the pod).
#
# Knobs (environment): RACE_N lookups per row (100), RACE_EVERY drop every
# RACE_EVERY-th colliding packet (10), RACE_PROBE_N lookups of the real-race
# probe (300), RACE_MODES subset of "off dnsconfig sidecar sidecar-nofallback"
# (debugging; the assertions need all of them), RACELAB_KEEP=1 keeps the work directory, RACELAB_DOCS=0 skips
# rewriting docs/race-lab.{md,svg}, RACELAB_HOLD=SECONDS keeps the topology
# that long before cleanup (debugging).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin

N=${RACE_N:-100}
EVERY=${RACE_EVERY:-10}
PROBE_N=${RACE_PROBE_N:-300}
WRITE_DOCS=${RACELAB_DOCS:-1}

SVC=10.251.0.10            # fake cluster DNS Service IP (only routed inside the lab)
NODELOCAL_IP=169.254.20.10    # node-local cache address (row d)
EP1=10.250.2.2             # DNS endpoint 1 (dnsmasq in dns1 ns)
EP2=10.250.3.2             # DNS endpoint 2 (dnsmasq in dns2 ns)
POD_IP=10.250.1.2
NAME=backend               # looked up by the clients; see docs/race-lab.md
FQDN=backend.default.svc.cluster.local
ADDR4=10.252.0.5
ADDR6=fd00:252::5

OWNERS=/run/dg-racelab     # <id> → pid of the lab run that owns dg-<id>-*
LAB_START=$(date +%s)

passed=0
failed=0
# Checks are also collected in $WORK/checks.txt for docs/race-lab.md.
pass() { passed=$((passed + 1)); echo "PASS: $*"; [ -z "${WORK:-}" ] || echo "PASS: $*" >>"$WORK/checks.txt"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; [ -z "${WORK:-}" ] || echo "FAIL: $*" >>"$WORK/checks.txt"; }
log() { echo "race-lab: $*"; }
die() { echo "race-lab: FATAL: $*" >&2; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, nftables)"
for t in ip nft dnsmasq conntrack gcc musl-gcc getent dig curl jq go timeout; do
  command -v "$t" >/dev/null || die "missing tool $t (run make deps)"
done
for b in webhook resolver certs; do
  [ -x "$BIN/$b" ] || die "missing $BIN/$b (run make build)"
done
chrt -f 10 true || die "cannot use SCHED_FIFO (needed for the CPU placement below)"

# ---- cleanup ---------------------------------------------------------------

# nuke_id removes every namespace of lab run <id>, the processes in them and
# its /etc/netns files. Processes are ended by pid (ip netns pids), so nothing
# outside the lab's namespaces is touched.
nuke_id() {
  local id=$1 ns pids
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^dg-${id}-(pod|node|dns1|dns2)$" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
      sleep 0.2
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  # The owner file holds "pid workdir"; a killed run's work directory goes too.
  local wd
  wd=$(awk '{print $2}' "$OWNERS/$id" 2>/dev/null || true)
  case $wd in /tmp/dg-racelab.*) [ "$id" = "${ID:-}" ] || rm -rf "$wd" ;; esac
  rm -rf "/etc/netns/dg-${id}-pod" "$OWNERS/$id"
}

# Leftovers: namespaces of runs whose owner process is gone (aborted with
# SIGKILL, machine crash). Live parallel runs keep theirs.
mkdir -p "$OWNERS"
for id in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^dg-([0-9a-f]+)-(pod|node|dns1|dns2)$/\1/p' | sort -u); do
  owner=$(awk '{print $1}' "$OWNERS/$id" 2>/dev/null || true)
  if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
    log "removing leftover namespaces of run $id"
    nuke_id "$id"
  fi
done

ID=$(printf '%04x%02x' $(( $$ & 0xffff )) $(( RANDOM & 0xff )))
POD=dg-$ID-pod
NODE=dg-$ID-node
DNS1=dg-$ID-dns1
DNS2=dg-$ID-dns2
WORK=$(mktemp -d /tmp/dg-racelab.XXXXXX)
echo "$$ $WORK" >"$OWNERS/$ID"

cleanup() {
  local rc=$?
  set +e
  if [ "${RACELAB_HOLD:-0}" != 0 ]; then
    log "holding the topology for ${RACELAB_HOLD}s (RACELAB_HOLD): ip netns exec $POD ..."
    sleep "$RACELAB_HOLD"
  fi
  nuke_id "$ID"
  if [ "${RACELAB_KEEP:-0}" = 1 ]; then
    log "kept work directory $WORK"
  else
    rm -rf "$WORK"
  fi
  # Prove the cleanup: nothing of this run may remain.
  if ip netns list | grep -q "^dg-$ID-"; then
    echo "race-lab: cleanup left namespaces behind: $(ip netns list | grep "^dg-$ID-" | tr '\n' ' ')" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inpod() { ip netns exec "$POD" "$@"; }
innode() { ip netns exec "$NODE" "$@"; }

# ---- topology --------------------------------------------------------------
log "run $ID: creating namespaces $POD $NODE $DNS1 $DNS2 (work dir $WORK)"
for ns in "$POD" "$NODE" "$DNS1" "$DNS2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
# veth pairs are created directly inside the namespaces, so their names never
# meet the root namespace or another run.
ip link add eth0 netns "$POD" type veth peer name vpod netns "$NODE"
ip link add eth0 netns "$DNS1" type veth peer name vdns1 netns "$NODE"
ip link add eth0 netns "$DNS2" type veth peer name vdns2 netns "$NODE"

ip -n "$POD" addr add "$POD_IP/24" dev eth0
# An IPv6 ULA makes the pod dual-stack, so AI_ADDRCONFIG callers
# (getent ahosts) ask for AAAA too, as they do in dual-stack clusters.
ip -n "$POD" -6 addr add fd00:250:1::2/64 dev eth0 nodad
ip -n "$POD" link set eth0 up
ip -n "$POD" route add default via 10.250.1.1
ip -n "$POD" -6 route add default via fd00:250:1::1

ip -n "$NODE" addr add 10.250.1.1/24 dev vpod
ip -n "$NODE" -6 addr add fd00:250:1::1/64 dev vpod nodad
ip -n "$NODE" addr add 10.250.2.1/24 dev vdns1
ip -n "$NODE" addr add 10.250.3.1/24 dev vdns2
for l in vpod vdns1 vdns2; do ip -n "$NODE" link set "$l" up; done
innode sysctl -qw net.ipv4.ip_forward=1

ip -n "$DNS1" addr add "$EP1/24" dev eth0
ip -n "$DNS1" link set eth0 up
ip -n "$DNS1" route add default via 10.250.2.1
ip -n "$DNS2" addr add "$EP2/24" dev eth0
ip -n "$DNS2" link set eth0 up
ip -n "$DNS2" route add default via 10.250.3.1

# kube-proxy's job: DNAT the Service IP to a random endpoint (kube-proxy's
# nftables mode uses exactly this numgen random map; its iptables mode uses
# -m statistic --mode random).
innode nft -f - <<EOF
table ip dgkube {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $SVC meta l4proto { udp, tcp } th dport 53 dnat to numgen random mod 2 map { 0 : $EP1, 1 : $EP2 }
  }
}
EOF

# ---- CPU placement -----------------------------------------------------------
# In a cluster the DNS pod is usually on another node: the A's answer needs
# 0.1-1 ms to come back, far longer than the microseconds between the A and the
# AAAA leaving the client, so the AAAA always travels while the A is
# unanswered. On one machine with veth the answer can beat the AAAA (and this
# kernel has no netem to add delay). So the clients run SCHED_FIFO and the
# dnsmasq servers run on the same CPU: dnsmasq gets the CPU only once the
# client sleeps waiting for answers, i.e. after both queries left — the
# ordering of a real network, on every lookup.
# The servers (dnsmasq, the sidecar resolver) run SCHED_FIFO too, at a
# lower priority than the clients: they never preempt a client, and the rest
# of a busy CI machine (compilers, other suites) cannot delay them either, so
# the clean rows measure dnsguard, not the machine's load.
LAB_CPU=$(taskset -pc $$ | sed -E 's/.*: *//; s/[,-].*//')
PIN=(taskset -c "$LAB_CPU" chrt -f 5)
FIFO=(taskset -c "$LAB_CPU" chrt -f 10)
SERVER_FIFO=(chrt -f 5)

# ---- DNS endpoints ---------------------------------------------------------
# dnsmasq answers A and AAAA for the test Service with TTL 0 (so no cache in
# any row hides the network path) and NXDOMAIN for every other name under
# cluster.local, like CoreDNS's kubernetes plugin.
start_dnsmasq() {
  local ns=$1 ip=$2
  ip netns exec "$ns" "${PIN[@]}" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address="$ip" --port=53 \
    --local=/cluster.local/ --host-record="$FQDN,$ADDR4,$ADDR6" --local-ttl=0 \
    --pid-file="$WORK/$ns.dnsmasq.pid" --log-facility=- \
    >"$WORK/$ns.dnsmasq.log" 2>&1 &
}
start_dnsmasq "$DNS1" "$EP1"
start_dnsmasq "$DNS2" "$EP2"

wait_dns() { # server name
  local i
  for i in $(seq 1 50); do
    if [ -n "$(inpod dig +short +time=1 +tries=1 @"$1" "$2" A 2>/dev/null)" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}
wait_dns "$EP1" "$FQDN" || die "dnsmasq in $DNS1 does not answer (log: $(cat "$WORK/$DNS1.dnsmasq.log"))"
wait_dns "$EP2" "$FQDN" || die "dnsmasq in $DNS2 does not answer"
a=$(inpod dig +short @"$SVC" "$FQDN" A)
aaaa=$(inpod dig +short @"$SVC" "$FQDN" AAAA)
if [ "$a" = "$ADDR4" ] && [ "$aaaa" = "$ADDR6" ]; then
  pass "topology: pod → Service IP $SVC → DNAT → dnsmasq answers A $a and AAAA $aaaa"
else
  fail "topology: A='$a' AAAA='$aaaa' via $SVC (want $ADDR4 / $ADDR6)"
fi
# Both endpoints must be used (random DNAT), as with a 2-replica CoreDNS.
for i in $(seq 1 20); do
  inpod dig +short +time=1 +tries=1 @"$SVC" "$FQDN" A >/dev/null || true
done
c1=$(innode conntrack -L -p udp --orig-dst "$SVC" 2>/dev/null | grep -c "src=$EP1" || true)
c2=$(innode conntrack -L -p udp --orig-dst "$SVC" 2>/dev/null | grep -c "src=$EP2" || true)
if [ "$c1" -gt 0 ] && [ "$c2" -gt 0 ]; then
  pass "topology: random DNAT spreads flows over both endpoints ($c1 / $c2 conntrack entries)"
else
  fail "topology: random DNAT used endpoints $c1 / $c2 times"
fi

# ---- clients ---------------------------------------------------------------
log "building gailoop with gcc (glibc) and musl-gcc -static (musl)"
gcc -O2 -Wall -Wextra -Werror -o "$WORK/gai-glibc" test/racelab/gailoop.c
musl-gcc -O2 -Wall -Wextra -Werror -static -o "$WORK/gai-musl" test/racelab/gailoop.c
if ldd "$WORK/gai-musl" >/dev/null 2>&1; then
  fail "musl client is dynamically linked"
else
  pass "clients built: gai-glibc (gcc, glibc $(ldd --version | head -1 | awk '{print $NF}')), gai-musl (musl-gcc -static)"
fi

# getent-loop <count> <timeout-s>: glibc's own `getent ahosts`, one process
# per lookup, same output format as gailoop (latency includes exec, ~1 ms).
cat >"$WORK/getent-loop" <<'EOF'
#!/usr/bin/env bash
set -uo pipefail
n=$1 limit=$2 name=$3 start=$SECONDS
for ((i = 0; i < n; i++)); do
  if ((SECONDS - start > limit)); then echo "getent-loop: time limit" >&2; exit 3; fi
  t0=$EPOCHREALTIME
  out=$(getent ahosts "$name" 2>&1); rc=$?
  t1=$EPOCHREALTIME
  ms=$(( (${t1/./} - ${t0/./}) ))
  ms=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  if [ $rc -eq 0 ]; then
    echo "$ms ok $(awk '{print $1}' <<<"$out" | sort -u | wc -l)"
  else
    echo "$ms fail getent-rc-$rc"
  fi
done
EOF
chmod +x "$WORK/getent-loop"

# set_resolv <file>: the pod's resolv.conf for the next run.
mkdir -p "/etc/netns/$POD"
set_resolv() { cp "$1" "/etc/netns/$POD/resolv.conf"; }

# run_client <client> <out> <count>: one row of lookups in the pod namespace.
run_client() {
  local client=$1 out=$2 n=$3 limit=$(( $3 * 7 + 30 )) cmd
  case $client in
    glibc-gai) cmd=("$WORK/gai-glibc" -f -n "$n" -t "$limit" "$NAME") ;;
    glibc-gai-loop) cmd=("$WORK/gai-glibc" -n "$n" -t "$limit" "$NAME") ;;
    glibc-getent) cmd=("$WORK/getent-loop" "$n" "$limit" "$NAME") ;;
    musl-gai) cmd=("$WORK/gai-musl" -n "$n" -t "$limit" "$NAME") ;;
    *) die "unknown client $client" ;;
  esac
  # In the background plus `wait`, so SIGTERM/SIGINT run the cleanup trap at
  # once instead of after a row full of 5 s stalls; --foreground keeps the
  # client in our process group, so a terminal's Ctrl-C reaches it too.
  ip netns exec "$POD" timeout --foreground $((limit + 10)) "${FIFO[@]}" "${cmd[@]}" >"$out" &
  wait $!
}

# ---- configurations from the project's own code ---------------------------
# The webhook runs inside the node namespace (its own loopback, no port clash
# with anything else on the machine); /explain renders the resolv.conf each
# mode gives a pod.
log "starting bin/webhook (dev certificates) in $NODE"
"$BIN/certs" dev --out-dir="$WORK/certs" --hosts=127.0.0.1,localhost >/dev/null
# Two instances: the defaults (port 8443), and --sidecar-fallback=false (port
# 8444) for the row that shows what the fallback nameserver costs musl.
# --shutdown-delay=0s: the lab stops it at once (no API server to drain for).
start_webhook() { # port extra-flags...
  local port=$1 i; shift
  ip netns exec "$NODE" "$BIN/webhook" --listen="127.0.0.1:$port" \
    --tls-cert-file="$WORK/certs/tls.crt" --tls-key-file="$WORK/certs/tls.key" \
    --nameservers="$SVC" --cluster-domain=cluster.local --shutdown-delay=0s "$@" \
    >"$WORK/webhook.$port.log" 2>&1 &
  for i in $(seq 1 100); do
    if innode curl -sf --cacert "$WORK/certs/ca.crt" "https://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "webhook on port $port did not become healthy: $(tail -5 "$WORK/webhook.$port.log")"
}
start_webhook 8443
start_webhook 8444 --sidecar-fallback=false
# Port 8445: --node-local-address, for row (d) node-local.
start_webhook 8445 --node-local-address=$NODELOCAL_IP

explain() { # mode [port [name]] → writes $WORK/resolv.<name>
  local mode=$1 port=${2:-8443} name=${3:-$1}
  jq -n --arg mode "$mode" '{apiVersion:"v1",kind:"Pod",
      metadata:{name:"client",namespace:"default",annotations:{"dnsguard.io/mode":$mode}},
      spec:{containers:[{name:"app",image:"app:1"}]}}' >"$WORK/pod.$name.json"
  innode curl -sS --fail-with-body --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
    --data-binary @"$WORK/pod.$name.json" "https://127.0.0.1:$port/explain" >"$WORK/explain.$name.json" \
    || die "/explain for mode $mode failed: $(cat "$WORK/explain.$name.json")"
  jq -er .resolvConf "$WORK/explain.$name.json" >"$WORK/resolv.$name" \
    || die "/explain for mode $mode has no resolvConf: $(cat "$WORK/explain.$name.json")"
  local got
  got=$(jq -r .mode "$WORK/explain.$name.json")
  [ "$got" = "$mode" ] || die "/explain answered mode '$got' for a pod annotated '$mode'"
}
for m in off dnsconfig sidecar; do explain "$m"; done
explain sidecar 8444 sidecar-nofallback
explain dnsconfig 8445 nodelocal
for m in off dnsconfig sidecar sidecar-nofallback nodelocal; do
  echo "--- resolv.conf for mode $m (from /explain)"
  cat "$WORK/resolv.$m"
done
# The lab is only meaningful if /explain gave what the modes promise.
check_resolv() { # mode description grep-pattern...
  local mode=$1 what=$2; shift 2
  local p
  for p in "$@"; do
    if ! grep -Eq -- "$p" "$WORK/resolv.$mode"; then
      fail "/explain $mode: $what (no line matching '$p')"
      return
    fi
  done
  pass "/explain $mode: $what"
}
check_resolv off "ClusterFirst rendering: Service IP, cluster search path, ndots:5" \
  "^nameserver $SVC\$" "^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local\$" "^options ndots:5\$"
check_resolv dnsconfig "timeout:2 attempts:3 single-request-reopen" \
  "^nameserver $SVC\$" "^options .*ndots:5.*timeout:2.*attempts:3.*single-request-reopen"
check_resolv sidecar "127.0.0.1 first, Service IP as fallback" "^nameserver 127\.0\.0\.1\$" "^nameserver $SVC\$" "^search default\.svc\.cluster\.local "
check_resolv nodelocal "node cache first, Service IP as fallback" "^nameserver ${NODELOCAL_IP//./\\.}\$" "^nameserver $SVC\$" \
  "^options .*timeout:2.*attempts:3"
if grep -q "^nameserver $SVC" "$WORK/resolv.sidecar-nofallback"; then
  fail "/explain sidecar with --sidecar-fallback=false still lists $SVC"
else
  pass "/explain sidecar with --sidecar-fallback=false: 127.0.0.1 only"
fi

# ---- the real race, no emulation ------------------------------------------
ct_stat() { # field → sum over CPUs of `conntrack -S` in the node namespace
  innode conntrack -S 2>/dev/null | tr ' ' '\n' | awk -F= -v f="$1" '$1 == f {s += $2} END {print s + 0}'
}
log "real-race probe: $PROBE_N glibc lookups (in-process loop) with the ClusterFirst resolv.conf, no emulation"
set_resolv "$WORK/resolv.off"
if1=$(ct_stat insert_failed); cr1=$(ct_stat clash_resolve); dr1=$(ct_stat drop)
inpod timeout 120 "$WORK/gai-glibc" -n "$PROBE_N" -t 100 "$NAME" >"$WORK/probe.glibc.txt" || true
inpod timeout 120 "$WORK/gai-musl" -n "$PROBE_N" -t 100 "$NAME" >"$WORK/probe.musl.txt" || true
if2=$(ct_stat insert_failed); cr2=$(ct_stat clash_resolve); dr2=$(ct_stat drop)
probe_slow=$(cat "$WORK/probe.glibc.txt" "$WORK/probe.musl.txt" | awk '$1 > 1000' | wc -l)
probe_done=$(cat "$WORK/probe.glibc.txt" "$WORK/probe.musl.txt" | wc -l)
REAL_RACE="conntrack -S in the node namespace over $probe_done lookups ($PROBE_N glibc + $PROBE_N musl, no emulation): insert_failed $if1 → $if2, clash_resolve $cr1 → $cr2, drop $dr1 → $dr2; lookups over 1 s: $probe_slow"
if [ "$if2" -gt "$if1" ] || [ "$probe_slow" -gt 0 ]; then
  REAL_RACE_FIRED=yes
else
  REAL_RACE_FIRED=no
fi
log "real race fired: $REAL_RACE_FIRED — $REAL_RACE"
[ "$probe_done" -eq $((2 * PROBE_N)) ] && pass "real-race probe completed $probe_done lookups" \
  || fail "real-race probe completed only $probe_done of $((2 * PROBE_N)) lookups"

# ---- emulated insert_failed ------------------------------------------------
# load_race: (re)load the emulation table, which resets its counters and its
# numgen counter, so every row sees the same deterministic drop pattern.
#
# A packet from the pod to the Service whose conntrack entry is already
# CONFIRMED but has not SEEN a REPLY is the second packet of a UDP flow sent
# while the first is unanswered: glibc's/musl's AAAA sent right behind the A
# from the same socket. In the kernel, if that packet is processed before the
# first one's entry is confirmed (parallel CPUs), both create an unconfirmed
# entry for the same tuple, __nf_conntrack_confirm finds the clash for the
# second, counts insert_failed and drops it. Here that loss happens on purpose
# for every EVERY-th such packet; retransmissions after a reply pass (the entry
# has SEEN_REPLY then), just as they do in the kernel.
load_race() {
  innode nft delete table ip dgrace 2>/dev/null || true
  innode nft -f - <<EOF
table ip dgrace {
  counter collisions { }
  counter drops { }
  chain prerouting {
    # after conntrack (-200) so ct status is known, before DNAT (-100)
    type filter hook prerouting priority -150; policy accept;
    ip daddr $SVC udp dport 53 ct direction original ct status & (confirmed | seen-reply) == confirmed counter name "collisions" numgen inc mod $EVERY 0 counter name "drops" drop
  }
}
EOF
}
nft_counter() { innode nft list counter ip dgrace "$1" | awk '/packets/ {for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1)}'; }

# ---- rows ------------------------------------------------------------------
ROWS=$WORK/rows.tsv
: >"$ROWS"
RESOLVER_PID=""
start_sidecar() {
  # Not through the inpod function: `func &` forks a subshell and $! would be
  # its pid; `ip netns exec` execs the command, so $! is the resolver's.
  ip netns exec "$POD" "${SERVER_FIFO[@]}" "$BIN/resolver" --listen=127.0.0.1:53 --upstream="$SVC:53" --health-listen=127.0.0.1:8053 \
    >"$WORK/resolver.$mode.log" 2>&1 &
  RESOLVER_PID=$!
  local i
  for i in $(seq 1 100); do
    kill -0 "$RESOLVER_PID" 2>/dev/null || die "resolver sidecar exited: $(tail -5 "$WORK/resolver.$mode.log")"
    if inpod "$BIN/resolver" probe --server=127.0.0.1:53 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "resolver sidecar did not come up: $(tail -5 "$WORK/resolver.$mode.log")"
}
stop_sidecar() {
  [ -n "$RESOLVER_PID" ] || return 0
  kill "$RESOLVER_PID" 2>/dev/null || true
  wait "$RESOLVER_PID" 2>/dev/null || true
  RESOLVER_PID=""
  # Nothing may survive into the next row (a leftover would answer instead).
  [ -z "$(ip netns pids "$POD")" ] || die "processes left in $POD after stopping the resolver: $(ip netns pids "$POD" | tr '\n' ' ')"
}

declare -A LABEL=([off]="a ClusterFirst (mode off)" [dnsconfig]="b dnsconfig" [sidecar]="c sidecar"
  [sidecar-nofallback]="c′ sidecar, fallback off" [nodelocal]="d node-local")
declare -A CLIENTS=([off]="glibc-gai glibc-gai-loop glibc-getent musl-gai"
  [dnsconfig]="glibc-gai glibc-gai-loop glibc-getent musl-gai"
  [sidecar]="glibc-gai glibc-gai-loop glibc-getent musl-gai"
  [sidecar-nofallback]="glibc-gai musl-gai"
  [nodelocal]="glibc-gai glibc-gai-loop glibc-getent musl-gai")
# (d) node-local: bin/resolver --node-local in the node namespace, on
# $NODELOCAL_IP (dummy/bridge interface, NOTRACK rules), asking the Service
# over TCP; the pod's resolv.conf is /explain's with --node-local-address.
NODE_HEALTH=127.0.0.1:9254
start_nodecache() {
  # The node's own traffic to the Service: kube-proxy DNATs it in the
  # output hook too; the route only has to exist (output NAT reroutes).
  innode nft add chain ip dgkube output '{ type nat hook output priority -100; }'
  innode nft add rule ip dgkube output ip daddr $SVC meta l4proto '{ udp, tcp }' th dport 53 \
    dnat to numgen random mod 2 map "{ 0 : $EP1, 1 : $EP2 }"
  innode ip route replace $SVC/32 dev vdns1
  ip netns exec "$NODE" "${SERVER_FIFO[@]}" "$BIN/resolver" --node-local --node-local-address="$NODELOCAL_IP" \
    --cluster-upstream="$SVC" --upstream="$SVC:53" --health-listen=$NODE_HEALTH --drain=0s \
    >"$WORK/resolver.$mode.log" 2>&1 &
  RESOLVER_PID=$!
  local i
  for i in $(seq 1 100); do
    kill -0 "$RESOLVER_PID" 2>/dev/null || die "node cache exited: $(tail -5 "$WORK/resolver.$mode.log")"
    if innode "$BIN/resolver" probe --readyz=$NODE_HEALTH >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "node cache did not become ready: $(tail -5 "$WORK/resolver.$mode.log")"
}
stop_nodecache() {
  kill "$RESOLVER_PID" 2>/dev/null || true
  wait "$RESOLVER_PID" 2>/dev/null || true
  RESOLVER_PID=""
  if innode ip link show dnsguard0 >/dev/null 2>&1; then
    fail "node cache left dnsguard0 behind after SIGTERM"
  else
    pass "node cache removed dnsguard0 and its NOTRACK table on SIGTERM"
  fi
}
MODES=${RACE_MODES:-off dnsconfig sidecar sidecar-nofallback nodelocal}
kif1=$(ct_stat insert_failed)
for mode in $MODES; do
  set_resolv "$WORK/resolv.$mode"
  case $mode in sidecar*) start_sidecar ;; nodelocal) start_nodecache ;; esac
  for client in ${CLIENTS[$mode]}; do
    load_race
    log "row ${LABEL[$mode]} × $client: $N lookups of '$NAME'"
    t0=$SECONDS
    run_client "$client" "$WORK/row.$mode.$client.txt" "$N" \
      || fail "row $mode/$client: client exited nonzero"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "${LABEL[$mode]}" "$client" "$WORK/row.$mode.$client.txt" \
      "$(nft_counter collisions)" "$(nft_counter drops)" >>"$ROWS"
    log "  done in $((SECONDS - t0)) s; collisions $(nft_counter collisions), drops $(nft_counter drops)"
  done
  if [ -n "$RESOLVER_PID" ]; then
    # TTL 0 and no cache hits: every sidecar lookup must have crossed the
    # node (and the emulation) — the sidecar rows are clean because of how
    # the resolver talks upstream, not because it answered from memory.
    if [ "$mode" = nodelocal ]; then
      innode curl -s "http://$NODE_HEALTH/metrics" >"$WORK/resolver.$mode.metrics" 2>/dev/null || true
    else
      inpod curl -s http://127.0.0.1:8053/metrics >"$WORK/resolver.$mode.metrics" 2>/dev/null || true
    fi
    upq=$(awk '/^dnsguard_resolver_upstream_queries_total/ {s += $NF} END {print s + 0}' "$WORK/resolver.$mode.metrics")
    lookups=$(( N * $(wc -w <<<"${CLIENTS[$mode]}") ))
    if [ "$upq" -ge "$lookups" ]; then
      pass "$mode: bin/resolver sent $upq queries upstream through the node for $lookups lookups"
    else
      fail "$mode: bin/resolver sent only $upq queries upstream for $lookups lookups (cache hid the path?)"
    fi
    if [ "$mode" = nodelocal ]; then stop_nodecache; else stop_sidecar; fi
  fi
done
innode nft delete table ip dgrace

kif2=$(ct_stat insert_failed)
KERNEL_DURING="during the emulated rows the kernel's own insert_failed went $kif1 → $kif2"
if [ "$kif1" = "$kif2" ]; then
  KERNEL_DURING+=" (every drop in the table is the emulation's)"
else
  KERNEL_DURING+=" (the real race fired during the rows too)"
fi
log "$KERNEL_DURING"

# ---- report and assertions -------------------------------------------------
log "building the report tool"
go build -o "$WORK/report" ./test/racelab/report
LAB_SECONDS=$(( $(date +%s) - LAB_START ))
report_args=(--rows="$ROWS" --n="$N" --every="$EVERY" --name="$NAME"
  --real-race="$REAL_RACE; $KERNEL_DURING" --real-race-fired="$REAL_RACE_FIRED"
  --resolv-dir="$WORK" --seconds="$LAB_SECONDS" --checks="$WORK/checks.txt"
  --machine="$(uname -srm), $(nproc) CPUs, glibc $(dpkg-query -W -f='${Version}' libc6 2>/dev/null || echo '?'), musl $(dpkg-query -W -f='${Version}' musl 2>/dev/null || echo '?'), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}')")
if [ "$WRITE_DOCS" = 1 ]; then
  report_args+=(--md=docs/race-lab.md --svg=docs/race-lab.svg)
fi
"$WORK/report" "${report_args[@]}" | tee "$WORK/report.out"
rp=$(grep -c '^PASS: ' "$WORK/report.out" || true)
rf=$(grep -c '^FAIL: ' "$WORK/report.out" || true)
passed=$((passed + rp))
failed=$((failed + rf))

log "lab ran $(( $(date +%s) - LAB_START )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
