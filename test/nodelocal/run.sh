#!/usr/bin/env bash
# Node-local mode, end to end in network namespaces (needs root):
#
#   dg-nl-pod1 ─┐                                  ┌─ dg-nl-dns: dnsmasq 10.251.1.2
#   dg-nl-pod2 ─┼─ dg-nl-node: bin/resolver --node-local ─┘  (cluster.local + example.com,
#   dg-nl-pod6 ─┘  dnsguard0 169.254.20.10 + fd00::10,         UDP and TCP)
#   (IPv6 only)    NOTRACK table (ip and ip6)
#
# The pods' resolv.conf is what the webhook writes with nodeLocal enabled:
# `nameserver 169.254.20.10`, then the cluster DNS as fallback, `options
# ndots:5 timeout:2 attempts:3 single-request-reopen`. Real glibc clients
# (getent ahosts, test/racelab/gailoop.c built with gcc) resolve through the
# node cache while it restarts (SIGTERM, start again) and while it is
# replaced surge-style (new instance first, SO_REUSEPORT, then SIGTERM the
# old): zero failures, and no lookup longer than the 2 s resolver timeout
# (plus 0.5 s slack for a loaded machine). One process serves both
# families: an IPv6-only pod resolves A and AAAA through fd00::10 with glibc
# and musl, untracked by conntrack. Also runs the root tests of
# resolver/nodelocal. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin/resolver
P=dg-nl
NODE=$P-node DNS=$P-dns POD1=$P-pod1 POD2=$P-pod2 POD6=$P-pod6
NL=169.254.20.10 NL6=fd00::10 DNSIP=10.251.1.2 UPIP=10.251.1.3
HEALTH=127.0.0.1:9254
MAX_MS=${NODELOCAL_MAX_MS:-2500}

. "$ROOT/hack/lib.sh" nodelocal-test

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for t in ip nft conntrack dnsmasq dig gcc musl-gcc getent curl go timeout; do
  command -v "$t" >/dev/null || die "$t missing (make deps)"
done
[ -x "$BIN" ] || die "$BIN missing (make build)"

WORK=$(mktemp -d /tmp/dnsguard-nodelocal.XXXXXX)
chmod 755 "$WORK"

# Everything this test makes is named dg-nl-*: remove leftovers of killed
# runs first, and everything again on exit. Processes are ended by pid.
teardown() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf /etc/netns/$P-*
}
cleanup() {
  local rc=$?
  teardown
  wait 2>/dev/null || true
  [ -n "${NODELOCAL_KEEP:-}" ] || rm -rf "$WORK"
  exit $rc
}
teardown
trap cleanup EXIT
trap 'exit 130' INT TERM

log "root tests of resolver/nodelocal (go test -tags root)"
if go test -count=1 -tags root ./resolver/nodelocal; then pass "go test -tags root ./resolver/nodelocal"; else fail "go test -tags root ./resolver/nodelocal"; fi

log "topology: $NODE, $DNS, $POD1, $POD2, $POD6 (IPv6 only)"
for ns in $NODE $DNS $POD1 $POD2 $POD6; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip netns exec $NODE sysctl -qw net.ipv4.ip_forward=1
veth() { # veth NS-A IF-A ADDR-A NS-B IF-B ADDR-B
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3/24" dev "$2"; ip -n "$1" link set "$2" up
  ip -n "$4" addr add "$6/24" dev "$5"; ip -n "$4" link set "$5" up
}
veth $NODE nl-dns 10.251.1.1 $DNS eth0 $DNSIP
ip -n $DNS addr add $UPIP/24 dev eth0   # the node's upstream for other names
veth $NODE nl-pod1 10.251.2.1 $POD1 eth0 10.251.2.2
veth $NODE nl-pod2 10.251.3.1 $POD2 eth0 10.251.3.2
ip -n $DNS route add default via 10.251.1.1
ip -n $POD1 route add default via 10.251.2.1
ip -n $POD2 route add default via 10.251.3.1
# The IPv6-only pod: no IPv4 address but loopback, as in a single-stack
# IPv6 cluster; nodad so the addresses are usable at once.
ip link add nl-pod6 netns $NODE type veth peer name eth0 netns $POD6
ip -n $NODE addr add fd00:251:6::1/64 dev nl-pod6 nodad; ip -n $NODE link set nl-pod6 up
ip -n $POD6 addr add fd00:251:6::2/64 dev eth0 nodad; ip -n $POD6 link set eth0 up
ip -n $POD6 -6 route add default via fd00:251:6::1
# Conntrack runs in a namespace only once a rule needs it (as kube-proxy's
# do on a real node): a ct expression turns it on, so `conntrack -L` below
# shows what NOTRACK kept out.
ip netns exec $NODE nft -f - <<'EOF'
table inet dgtest {
  chain dgforward { type filter hook forward priority 0; ct state invalid counter; }
  chain dginput { type filter hook input priority 0; ct state invalid counter; }
}
EOF

log "cluster DNS: dnsmasq in $DNS on $DNSIP (UDP and TCP)"
cat >"$WORK/hosts" <<EOF
10.96.0.1 kubernetes.default.svc.cluster.local
10.96.5.7 web.shop.svc.cluster.local
fd00:96::5:7 web6.shop.svc.cluster.local
192.0.2.80 web.example.com
2001:db8::80 web.example.com
EOF
ip netns exec $DNS dnsmasq --keep-in-foreground --conf-file=/dev/null --user=root \
  --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --local-ttl=30 \
  --listen-address=$DNSIP,$UPIP --bind-interfaces --local=/cluster.local/ --local=/example.com/ \
  --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" &
disown $!  # ended by teardown (by pid); no "Killed" job report
for _ in $(seq 50); do ip netns exec $DNS dig +time=1 +tries=1 @$DNSIP web.example.com >/dev/null 2>&1 && break; sleep 0.1; done
check "dnsmasq answers over TCP" bash -c "ip netns exec $DNS dig +tcp +short @$DNSIP web.shop.svc.cluster.local | grep -qx 10.96.5.7"

# The resolv.conf the webhook renders with nodeLocal enabled (webhook
# TestNodeLocalDNSConfigPutsNodeCacheFirst pins the same text); `ip netns
# exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf.
for ns in $POD1 $POD2; do
  mkdir -p /etc/netns/$ns
  printf 'nameserver %s\nnameserver %s\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 single-request-reopen\n' $NL $DNSIP >/etc/netns/$ns/resolv.conf
done
# The IPv6-only pod's, as the webhook writes it for an IPv6 cluster with
# nodeLocal.address=169.254.20.10,fd00::10 (golden case
# ipv6-cluster-nodelocal); this lab has no IPv6 cluster DNS, so the node
# cache is its only nameserver.
mkdir -p /etc/netns/$POD6
printf 'nameserver %s\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 single-request-reopen\n' $NL6 >/etc/netns/$POD6/resolv.conf

RES_ARGS=(--node-local --node-local-address=$NL,$NL6 --cluster-upstream=$DNSIP --upstream=$UPIP:53 --health-listen=$HEALTH --drain=1s --log-level=info)
start_resolver() { # start_resolver NAME: starts bin/resolver in the node, sets RPID
  ip netns exec $NODE "$BIN" "${RES_ARGS[@]}" >>"$WORK/$1.log" 2>&1 &
  RPID=$!
}
wait_ready() { # the DaemonSet's readiness: listeners up and the cluster DNS answered
  for _ in $(seq 100); do
    ip netns exec $NODE curl -sf "http://$HEALTH/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
stop_resolver() { # stop_resolver PID: SIGTERM and wait for the exit
  kill -TERM "$1"
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.05; done
  return 1
}

log "node cache: bin/resolver ${RES_ARGS[*]}"
check "refuses to start without NET_ADMIN, saying so" bash -c \
  "! ip netns exec $NODE setpriv --inh-caps=-all --bounding-set=-net_admin $BIN ${RES_ARGS[*]} >$WORK/nocap.log 2>&1 && grep -q 'needs the NET_ADMIN capability' $WORK/nocap.log"
start_resolver a
A=$RPID
check "readyz 200 once listening and the cluster DNS answered" wait_ready
check "interface dnsguard0 holds $NL" bash -c "ip -n $NODE -br addr show dev dnsguard0 | grep -q '$NL/32'"
check "interface dnsguard0 holds $NL6" bash -c "ip -n $NODE -br addr show dev dnsguard0 | grep -q '$NL6/128'"
ip netns exec $NODE nft list table inet dnsguard_nodelocal >"$WORK/nft.txt" 2>&1 || true
check "NOTRACK table installed (nft list table inet dnsguard_nodelocal)" \
  grep -q "ip daddr $NL udp dport 53 counter packets [0-9]* bytes [0-9]* notrack" "$WORK/nft.txt"
check "NOTRACK for $NL6 too (ip6 daddr)" \
  grep -q "ip6 daddr $NL6 udp dport 53 counter packets [0-9]* bytes [0-9]* notrack" "$WORK/nft.txt"

log "answers and routing"
check "cluster name via the cluster upstream (dig from $POD1)" bash -c \
  "ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL kubernetes.default.svc.cluster.local | grep -qx 10.96.0.1"
check "external name via --upstream (dig from $POD2)" bash -c \
  "ip netns exec $POD2 dig +short +time=2 +tries=1 @$NL web.example.com AAAA | grep -qx 2001:db8::80"
check "reverse zone goes to the cluster upstream" bash -c \
  "ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL -x 10.96.5.7 | grep -qx web.shop.svc.cluster.local."
ip netns exec $NODE curl -sf "http://$HEALTH/metrics" >"$WORK/metrics.txt"
check "metrics: both upstream groups used (cluster/$DNSIP:53, $UPIP:53)" bash -c \
  "grep -q 'upstream_queries_total{upstream=\"cluster/$DNSIP:53\"} [1-9]' $WORK/metrics.txt && grep -q 'upstream_queries_total{upstream=\"$UPIP:53\"} [1-9]' $WORK/metrics.txt"
check "getent ahosts (glibc, search path) in $POD1" bash -c \
  "ip netns exec $POD1 getent ahosts web.shop | grep -q '^10.96.5.7 '"

log "IPv6: one process, both families ($POD6 has IPv6 only)"
check "A over IPv6 (dig @$NL6 from $POD6)" bash -c \
  "ip netns exec $POD6 dig +short +time=2 +tries=1 @$NL6 web.example.com A | grep -qx 192.0.2.80"
check "AAAA over IPv6 (dig @$NL6 from $POD6)" bash -c \
  "ip netns exec $POD6 dig +short +time=2 +tries=1 @$NL6 web.example.com AAAA | grep -qx 2001:db8::80"
check "cluster name over IPv6 TCP (dig +tcp @$NL6)" bash -c \
  "ip netns exec $POD6 dig +tcp +short +time=2 +tries=1 @$NL6 kubernetes.default.svc.cluster.local | grep -qx 10.96.0.1"
# getent ahosts asks with AI_ADDRCONFIG: in a pod without an IPv4 address
# glibc sends AAAA only, as it would in a real IPv6-only pod.
check "getent ahosts (glibc, search path) in $POD6" bash -c \
  "ip netns exec $POD6 getent ahosts web.example.com | grep -q '^2001:db8::80 ' && ip netns exec $POD6 getent ahosts web6.shop | grep -q '^fd00:96::5:7 '"
gcc -O2 -Wall -Wextra -Werror -o "$WORK/gailoop" test/racelab/gailoop.c
musl-gcc -O2 -Wall -Wextra -Werror -static -o "$WORK/gailoop-musl" test/racelab/gailoop.c
for libc in glibc musl; do
  bin=$WORK/gailoop; [ $libc = musl ] && bin=$WORK/gailoop-musl
  ip netns exec $POD6 timeout 30 "$bin" -n 200 -t 12 web.example.com. >"$WORK/pod6-$libc.txt" 2>&1 || true
  read -r n f m _ < <(awk '$2=="ok"||$2=="fail" {n++; if ($2=="fail") f++; if ($1+0>m) m=$1+0} END {printf "%d %d %.1f x\n", n, f+0, m+0}' "$WORK/pod6-$libc.txt")
  echo "    $libc in $POD6: $n lookups (A and AAAA each), $f failed, max $m ms"
  check "$libc in the IPv6-only pod: 200 lookups through $NL6, none failed" bash -c "[ $n -eq 200 ] && [ $f -eq 0 ]"
done
# Control: a query to the node's own veth address is not NOTRACKed, so
# IPv6 conntrack is on here and the check below can fail.
ip netns exec $POD6 dig +short +time=1 +tries=1 @fd00:251:6::1 web.example.com >/dev/null 2>&1 || true
ctl6=$(ip netns exec $NODE conntrack -L -f ipv6 -d fd00:251:6::1 -p udp --dport 53 2>/dev/null | grep -c . || true)
ct6=$(ip netns exec $NODE conntrack -L -f ipv6 2>/dev/null | grep -F "$NL6" | grep -cE ' (dport|sport)=53 ' || true)
echo "    IPv6 conntrack entries: to $NL6: $ct6, control (to fd00:251:6::1): $ctl6"
check "IPv6 conntrack works in the node (control query tracked)" test "$ctl6" -ge 1
check "no conntrack entry for the IPv6 pod's queries to $NL6" test "$ct6" -eq 0

log "conntrack: queries to $NL stay untracked"
ip netns exec $NODE conntrack -F >/dev/null 2>&1 || true
for i in $(seq 20); do ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL "n$i.example.com" >/dev/null || true; done
ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL +tcp web.example.com >/dev/null || true
ip netns exec $POD1 dig +short +time=2 +tries=1 @$DNSIP web.example.com >/dev/null || true  # control: tracked
ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL nope.svc.cluster.local >/dev/null || true  # a miss to the cluster DNS
tcp_up=$(ip netns exec $NODE conntrack -L -p tcp -d $DNSIP --dport 53 2>/dev/null | grep -c . || true)
udp_up=$(ip netns exec $NODE conntrack -L -p udp -s 10.251.1.1 -d $DNSIP --dport 53 2>/dev/null | grep -c . || true)
# Only DNS flows count: late FIN/ACKs of the readiness/metrics curls to the
# health port on $NL can be picked up mid-stream after the flush (conntrack's
# tcp_loose), and NOTRACK deliberately covers port 53 only.
ip netns exec $NODE conntrack -L 2>/dev/null | grep -F "$NL" >"$WORK/ct-nl.txt" || true
nl_ct=$(grep -F "dst=$NL " "$WORK/ct-nl.txt" | grep -cE ' (dport|sport)=53 ' || true)
nl_ct_src=$(grep -F "src=$NL " "$WORK/ct-nl.txt" | grep -cE ' (dport|sport)=53 ' || true)
ctl_ct=$(ip netns exec $NODE conntrack -L -d $DNSIP -p udp --dport 53 2>/dev/null | grep -c . || true)
echo "    conntrack entries: to $NL: $nl_ct, from $NL: $nl_ct_src, control (pod -> $DNSIP, forwarded): $ctl_ct"
check "conntrack works in the node (control query tracked)" test "$ctl_ct" -ge 1
check "no conntrack entry for queries to or from $NL (UDP and TCP)" test "$((nl_ct + nl_ct_src))" -eq 0
[ "$((nl_ct + nl_ct_src))" -eq 0 ] || sed 's/^/      /' "$WORK/ct-nl.txt"
echo "    node -> cluster DNS: $tcp_up TCP, $udp_up UDP connections tracked"
check "cluster upstream asked over TCP only (force_tcp)" bash -c "[ $tcp_up -ge 1 ] && [ $udp_up -eq 0 ]"
pkts=$(ip netns exec $NODE nft list table inet dnsguard_nodelocal | awk '/prerouting/ {p=1} p && /daddr 169.254.20.10 udp dport 53/ {for (i=1;i<=NF;i++) if ($i=="packets") {print $(i+1); exit}}')
check "NOTRACK prerouting rule counted the pods' queries ($pkts packets)" test "${pkts:-0}" -ge 20

log "glibc clients while the node cache restarts"
run_loops() { # run_loops TAG: gailoop in both pods in the background (bounded)
  ip netns exec $POD1 timeout 60 "$WORK/gailoop" -n 20000 -t 12 kubernetes.default.svc.cluster.local. >"$WORK/$1-pod1.txt" 2>&1 &
  L1=$!
  ip netns exec $POD2 timeout 60 "$WORK/gailoop" -n 20000 -t 12 web.example.com. >"$WORK/$1-pod2.txt" 2>&1 &
  L2=$!
}
loop_stats() { # loop_stats FILE...: "count fails max_ms over_1s"
  cat "$@" | awk '$2=="ok"||$2=="fail" {n++; if ($2=="fail") f++; if ($1+0>m) m=$1+0; if ($1+0>1000) s++}
    END {printf "%d %d %.1f %d\n", n, f+0, m+0, s+0}'
}
assert_run() { # assert_run TAG LIMIT_MS
  read -r n f m s < <(loop_stats "$WORK/$1-pod1.txt" "$WORK/$1-pod2.txt")
  echo "    $1: $n lookups, $f failed, max ${m} ms, $s over 1 s"
  echo "$1 $n $f $m $s" >>"$WORK/results.txt"
  check "$1: lookups ran ($n)" test "$n" -ge 100
  check "$1: zero failed lookups" test "$f" -eq 0
  check "$1: slowest lookup ${m} ms <= $2 ms" awk -v m="$m" -v l="$2" 'BEGIN {exit !(m <= l)}'
}

# 1. Plain restart: SIGTERM (drain 1 s, then the address and rules are
# removed since nobody else answers), start again. Lookups in the gap get
# an ICMP error or time out after 2 s and go to the fallback nameserver.
run_loops restart
sleep 2
check "restart: old instance exits on SIGTERM" stop_resolver "$A"
check "restart: interface removed when no other instance answers" bash -c "! ip -n $NODE link show dnsguard0 >/dev/null 2>&1"
check "restart: NOTRACK table removed with it" bash -c "! ip netns exec $NODE nft list table inet dnsguard_nodelocal >/dev/null 2>&1"
start_resolver b
B=$RPID
check "restart: new instance ready" wait_ready
wait $L1 $L2 || true
assert_run restart "$MAX_MS"

# 2. Surge handover (DaemonSet maxSurge 1): the new instance binds beside
# the old one (SO_REUSEPORT), then the old one drains, detaches and exits
# and must leave the interface to its successor.
run_loops surge
sleep 2
start_resolver c
C=$RPID
check "surge: second instance binds the same address and port (SO_REUSEPORT)" bash -c \
  "for i in \$(seq 100); do grep -q 'upstream answered; ready' $WORK/c.log && exit 0; sleep 0.05; done; cat $WORK/c.log; exit 1"
sleep 1
check "surge: old instance exits on SIGTERM" stop_resolver "$B"
check "surge: old instance left interface and rules to its successor" \
  grep -q "another instance answers on the node-local address" "$WORK/b.log"
check "surge: $NL still on dnsguard0" bash -c "ip -n $NODE -br addr show dev dnsguard0 | grep -q '$NL/32'"
check "surge: NOTRACK table still present" bash -c "ip netns exec $NODE nft list table inet dnsguard_nodelocal >/dev/null"
wait $L1 $L2 || true
# The successor answered throughout: no lookup needed the fallback.
assert_run surge 1000
check "surge: successor answers" bash -c "ip netns exec $POD1 dig +short +time=2 +tries=1 @$NL web.example.com A | grep -qx 192.0.2.80"
check "final SIGTERM removes interface and rules" bash -c \
  "kill -TERM $C; for i in \$(seq 100); do kill -0 $C 2>/dev/null || break; sleep 0.05; done; ! ip -n $NODE link show dnsguard0 >/dev/null 2>&1 && ! ip netns exec $NODE nft list table inet dnsguard_nodelocal >/dev/null 2>&1"

if [ -n "${NODELOCAL_RESULTS:-}" ]; then cp "$WORK/results.txt" "$NODELOCAL_RESULTS"; fi
summary
