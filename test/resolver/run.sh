#!/usr/bin/env bash
# Integration test of bin/resolver against real peers: dnsmasq as the
# upstream serving a test zone, dig as a client, and glibc itself
# (getent ahosts and a small getaddrinfo program) reading a resolv.conf
# bind-mounted in a private mount namespace. Needs root, dnsmasq-base,
# bind9-dnsutils and gcc (make deps). Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

# Addresses of our own in 127.0.0.0/8, away from 127.0.0.1/.53 and the
# other suites' defaults.
UP_IP=127.0.53.2 UP_PORT=5300
RES_IP=127.0.53.3 RES_PORT=53
HEALTH=$RES_IP:8053
BIN=$ROOT/bin/resolver

. "$ROOT/hack/lib.sh" resolver-test

[ "$(id -u)" -eq 0 ] || die "needs root (unshare -m, port 53)"
for t in dnsmasq dig gcc unshare curl; do
  command -v "$t" >/dev/null || die "$t missing (make deps)"
done
[ -x "$BIN" ] || die "$BIN missing (make build)"

WORK=$(mktemp -d /tmp/dnsguard-resolver-test.XXXXXX)
chmod 755 "$WORK"
DNSMASQ_PID="" RES_PID="" REC_PID="" RES2_PID=""
cleanup() {
  [ -n "$RES_PID" ] && kill -9 "$RES_PID" 2>/dev/null || true
  [ -n "$RES2_PID" ] && kill -9 "$RES2_PID" 2>/dev/null || true
  [ -n "$REC_PID" ] && kill "$REC_PID" 2>/dev/null || true
  [ -n "$DNSMASQ_PID" ] && kill "$DNSMASQ_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "setup in $WORK"
cat >"$WORK/hosts" <<EOF
192.0.2.10 www.test.example
2001:db8::10 www.test.example
192.0.2.11 v4only.test.example
192.0.2.20 glibc.test.example
2001:db8::20 glibc.test.example
192.0.2.21 getent.test.example
2001:db8::21 getent.test.example
192.0.2.30 stale.test.example
192.0.2.40 slow.test.example
192.0.2.41 ports.test.example
2001:db8::41 ports.test.example
EOF
big=()
for c in a b c d e f; do big+=("$(printf "%0200d" 0 | tr 0 "$c")"); done
start_dnsmasq() {
  dnsmasq --keep-in-foreground --conf-file=/dev/null --user=root \
    --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --local-ttl=300 \
    --listen-address=$UP_IP --bind-interfaces --port=$UP_PORT \
    --local=/test.example/ --pid-file="$WORK/dnsmasq.pid" \
    --txt-record="big.test.example,$(IFS=,; echo "${big[*]}")" \
    --log-queries --log-facility="$WORK/dnsmasq.log" &
  DNSMASQ_PID=$!
  for _ in $(seq 50); do
    dig +short +time=1 +tries=1 @$UP_IP -p $UP_PORT www.test.example A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "dnsmasq did not start; its log: $(cat "$WORK/dnsmasq.log" 2>&1)"
}
start_dnsmasq
upstream_queries() { grep -c "query\[" "$WORK/dnsmasq.log" || true; }

"$BIN" --listen=$RES_IP:$RES_PORT --upstream=$UP_IP:$UP_PORT --health-listen=$HEALTH \
  --serve-stale --timeout=500ms --total-timeout=2s --drain=2s --log-level=info \
  2>"$WORK/resolver.log" &
RES_PID=$!
for _ in $(seq 50); do
  "$BIN" probe --server=$RES_IP:$RES_PORT --timeout=200ms >/dev/null 2>&1 && break
  sleep 0.1
done

D() { dig +time=3 +tries=1 @$RES_IP -p $RES_PORT "$@"; }
metric() { curl -sf "http://$HEALTH/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

log "resolver basics (dig)"
check "probe subcommand answers" "$BIN" probe --server=$RES_IP:$RES_PORT
check "probe of a dead address fails" bash -c "! '$BIN' probe --server=127.0.53.9:53 --timeout=300ms 2>/dev/null"
check "UDP A" test "$(D +short www.test.example A)" = "192.0.2.10"
check "UDP AAAA" test "$(D +short www.test.example AAAA)" = "2001:db8::10"
check "TCP A" test "$(D +tcp +short www.test.example A)" = "192.0.2.10"
out=$(D WwW.TeSt.ExAmPlE A +noall +question +answer)
check "question case echoed" grep -q "^;WwW.TeSt.ExAmPlE.[[:space:]]" <<<"$out"
check "answer from cache keeps a decremented TTL <= 300" \
  bash -c "ttl=\$(dig @$RES_IP -p $RES_PORT www.test.example A +noall +answer | awk '{print \$2}'); [ \"\$ttl\" -le 300 ] && [ \"\$ttl\" -gt 250 ]"
out=$(D nx.test.example A)
check "NXDOMAIN" grep -q "status: NXDOMAIN" <<<"$out"
out=$(D www.test.example ANY)
check "ANY minimised (RFC 8482 HINFO, no upstream query)" grep -q 'HINFO.*"RFC8482"' <<<"$out"
check "ANY not forwarded" bash -c "! grep -q 'query\[ANY\]' '$WORK/dnsmasq.log'"
out=$(D +tcp test.example AXFR 2>&1 || true)
check "AXFR refused" grep -qiE "REFUSED|Transfer failed" <<<"$out"

log "truncation"
out=$(D +noedns +ignore big.test.example TXT)
check "no EDNS0: answer over 512 bytes has TC" grep -qE "flags: qr[a-z ]* tc" <<<"$out"
size=$(D +noedns +ignore big.test.example TXT | awk '/MSG SIZE/ {print $NF}')
check "no EDNS0: UDP reply <= 512 bytes ($size)" test "${size:-9999}" -le 512
out=$(D +bufsize=1232 +ignore big.test.example TXT)
check "EDNS0 1232: 1.3 kB answer has TC" grep -qE "flags: qr[a-z ]* tc" <<<"$out"
out=$(D +bufsize=4096 big.test.example TXT)
size=$(awk '/MSG SIZE/ {print $NF}' <<<"$out")
check "EDNS0 4096: full ${size}-byte answer over UDP, no TC" \
  bash -c "[ '${size:-0}' -gt 1232 ] && ! grep -qE 'flags: qr[a-z ]* tc' <<<'$out'"
out=$(D +noedns big.test.example TXT)
check "dig retries over TCP and gets the whole TXT record" bash -c "grep -q 'Truncated, retrying in TCP' <<<'$out' && grep -q ffffffff <<<'$out'"

log "bad input"
printf '\x12' >/dev/udp/$RES_IP/$RES_PORT
printf '\x12\x34\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01' >/dev/udp/$RES_IP/$RES_PORT
head -c 3000 /dev/urandom >/dev/udp/$RES_IP/$RES_PORT || true
# A stalled TCP client (length prefix, then nothing) must not block others.
exec 7<>/dev/tcp/$RES_IP/$RES_PORT
printf '\x00' >&7
check "still answering after garbage and a stalled TCP client" test "$(D +tcp +short www.test.example A)" = "192.0.2.10"
exec 7>&-
check "resolver still running" kill -0 $RES_PID

log "glibc (getent ahosts, getaddrinfo) in a private mount namespace"
gcc -O2 -Wall -o "$WORK/gai" test/resolver/gai.c
printf 'nameserver %s\noptions timeout:2 attempts:1\n' $RES_IP >"$WORK/resolv.conf"
inns() { unshare -m bash -c "mount --bind '$WORK/resolv.conf' /etc/resolv.conf && $*"; }
before=$(upstream_queries)
out=$(inns getent ahosts getent.test.example)
echo "$out" | sed 's/^/    /'
check "getent ahosts: IPv4 address" grep -q "^192.0.2.21 " <<<"$out"
check "getent ahosts: IPv6 address" grep -q "^2001:db8::21 " <<<"$out"
out=$(inns "'$WORK/gai' glibc.test.example glibc.test.example v4only.test.example")
echo "$out" | sed 's/^/    /'
first=$(sed -n 1p <<<"$out") second=$(sed -n 2p <<<"$out")
check "getaddrinfo: both families" bash -c "grep -q 192.0.2.20 <<<'$first' && grep -q 2001:db8::20 <<<'$first'"
ms1=$(awk '{print $NF}' <<<"$first" | tr -d ms) ms2=$(awk '{print $NF}' <<<"$second" | tr -d ms)
check "getaddrinfo: first lookup quick (${ms1}ms, no 5 s stall)" awk -v t="$ms1" 'BEGIN { exit !(t < 1000) }'
check "getaddrinfo: second lookup from cache (${ms2}ms)" awk -v t="$ms2" 'BEGIN { exit !(t < 50) }'
check "getaddrinfo: v4-only name (AAAA is NODATA)" grep -q "^v4only.test.example 192.0.2.11 " <<< "$(sed -n 3p <<<"$out")"
n=$(( $(upstream_queries) - before ))
check "upstream saw each question once (got $n for 3 names x A/AAAA)" test "$n" -eq 6
hits=$(metric dnsguard_resolver_cache_hits_total)
check "cache hits counted ($hits)" test "${hits%.*}" -ge 2

log "metrics and health"
check "/healthz" curl -sf "http://$HEALTH/healthz" -o /dev/null
check "/readyz" curl -sf "http://$HEALTH/readyz" -o /dev/null
check "/metrics names" bash -c "curl -sf http://$HEALTH/metrics | grep -q '^dnsguard_resolver_upstream_duration_seconds_bucket'"

log "upstream source ports and slow upstream (recording relay in front of dnsmasq)"
# test/resolver/recorder logs the source port of every query it receives
# and answers names starting with "slow" 1.5 s late. A second resolver with
# the default --timeout=1s --total-timeout=3s uses it as its upstream.
REC=127.0.53.4:5301 RES2=127.0.53.5
go build -o "$WORK/recorder" ./test/resolver/recorder
"$WORK/recorder" --listen=$REC --upstream=$UP_IP:$UP_PORT --log="$WORK/recorder.log" 2>"$WORK/recorder.err" &
REC_PID=$!
"$BIN" --listen=$RES2:53 --upstream=$REC --health-listen= 2>"$WORK/resolver2.log" &
RES2_PID=$!
for _ in $(seq 50); do
  "$BIN" probe --server=$RES2:53 --timeout=200ms >/dev/null 2>&1 && break
  sleep 0.1
done
for i in $(seq 1 40); do dig +short +time=3 +tries=1 @$RES2 "p$i.test.example" A >/dev/null || true; done
n=$(grep -c " A p[0-9]*.test.example" "$WORK/recorder.log" || true)
ports=$(grep " A p[0-9]*.test.example" "$WORK/recorder.log" | awk '{print $1}' | sort -u | wc -l)
check "40 consecutive upstream queries from 40 source ports (got $n queries, $ports ports)" test "$n" -eq 40 -a "$ports" -eq 40
printf 'nameserver %s\noptions timeout:2 attempts:1\n' $RES2 >"$WORK/resolv2.conf"
out=$(unshare -m bash -c "mount --bind '$WORK/resolv2.conf' /etc/resolv.conf && getent ahosts ports.test.example")
pa=$(awk '$3 == "ports.test.example." && $2 == "A" {print $1}' "$WORK/recorder.log")
paaaa=$(awk '$3 == "ports.test.example." && $2 == "AAAA" {print $1}' "$WORK/recorder.log")
check "getent ahosts: both families via the second resolver" bash -c "grep -q 192.0.2.41 <<<'$out' && grep -q 2001:db8::41 <<<'$out'"
check "A and AAAA of one name from different source ports (A $pa, AAAA $paaaa)" test -n "$pa" -a -n "$paaaa" -a "$pa" != "$paaaa"
out=$(dig +time=4 +tries=1 @$RES2 slow.test.example A)
ms=$(awk '/Query time:/ {print $4}' <<<"$out")
check "upstream always 1.5 s late: answer, not SERVFAIL (${ms}ms)" bash -c "grep -q 'status: NOERROR' <<<'$out' && grep -q 192.0.2.40 <<<'$out'"
check "late answer taken at about 1.5 s, before the 3 s budget (${ms}ms)" test "${ms:-9999}" -ge 1400 -a "${ms:-9999}" -lt 2500
kill "$RES2_PID" "$REC_PID" 2>/dev/null || true
wait "$RES2_PID" "$REC_PID" 2>/dev/null || true
RES2_PID="" REC_PID=""

log "footprint"
size=$(stat -c %s "$BIN")
echo "    binary: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB)"
check "stripped static binary <= 7 MiB" test "$size" -le $((7 * 1048576))
check "binary is static" bash -c "! ldd '$BIN' >/dev/null 2>&1"
# wakeups PID: context switches of all its threads (voluntary and not), so
# a timer on any goroutine's thread counts.
wakeups() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
rss=$(awk '/^VmRSS/ {print $2}' /proc/$RES_PID/status)
check "idle RSS <= 8 MiB (${rss} kB)" test "$rss" -le 8192
# Idle means three quiet seconds in a row (at most 3 wakeups each) within
# 10 s. What the load above leaves behind dies down: late upstream answers,
# retry timers, the Go runtime's scavenger returning memory (54 wakeups in
# the 3 s right after the load, once, on a machine busy compiling). A timer
# of 4 Hz or more never gives a quiet second (negative control: `wakeups` of
# `bash -c 'while sleep 0.1; do :; done'` counted 9-16 in each of 10 seconds;
# the resolver after 30 queries to a dead upstream: 589 in the first
# second, then 0 in each of the next 19).
# CPU ticks are sampled (10 ms each): their bound only catches spinning.
quiet=0 windows=()
read -r ut0 st0 < <(awk '{print $14, $15}' /proc/$RES_PID/stat)
prev=$(wakeups "$RES_PID")
for ((i = 0; i < 10 && quiet < 3; i++)); do
  sleep 1
  cur=$(wakeups "$RES_PID")
  windows+=($((cur - prev)))
  if ((cur - prev <= 3)); then quiet=$((quiet + 1)); else quiet=0; fi
  prev=$cur
done
read -r ut1 st1 < <(awk '{print $14, $15}' /proc/$RES_PID/stat)
echo "    idle: wakeups per second ${windows[*]}; $((ut1 + st1 - ut0 - st0)) CPU ticks in ${#windows[@]} s; VmRSS ${rss} kB"
check "no busy timers when idle (3 seconds in a row with <= 3 wakeups within 10 s; <= 5 CPU ticks)" test "$quiet" -ge 3 -a $((ut1 + st1 - ut0 - st0)) -le 5

log "upstream failure: serve-stale and SERVFAIL within the budget"
kill "$DNSMASQ_PID"; wait "$DNSMASQ_PID" 2>/dev/null || true; DNSMASQ_PID=""
out=$(D v4only-missing.test.example A || true)
ms=$(awk '/Query time:/ {print $4}' <<<"$out")
check "dead upstream: SERVFAIL" grep -q "status: SERVFAIL" <<<"$out"
check "dead upstream: answered within the 2 s budget (dig query time ${ms}ms)" test "${ms:-9999}" -lt 2300
check "cached names keep answering" test "$(D +short www.test.example A)" = "192.0.2.10"

log "graceful shutdown (SIGTERM, --drain=2s)"
kill -TERM $RES_PID
sleep 0.3
check "answers during drain" test "$(D +short www.test.example A)" = "192.0.2.10"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$HEALTH/readyz" || true)
check "readyz 503 during drain ($code)" test "$code" = 503
for _ in $(seq 40); do kill -0 $RES_PID 2>/dev/null || break; sleep 0.1; done
check "exited after the drain period" bash -c "! kill -0 $RES_PID 2>/dev/null"
rc=0; wait $RES_PID || rc=$?
RES_PID=""
check "exit status 0 ($rc)" test "$rc" = 0

log "configuration errors name the bad value"
out=$("$BIN" --listen=0.0.0.0:53 --upstream=10.0.0.1 2>&1 || true)
check "non-loopback listen refused" grep -q -- "--listen=0.0.0.0:53" <<<"$out"
out=$("$BIN" --upstream=not-an-ip 2>&1 || true)
check "bad upstream named" grep -q -- "--upstream=not-an-ip" <<<"$out"
check "--help exits 0" bash -c "'$BIN' --help 2>&1 | grep -q -- '-parallel-a-aaaa'"

summary
