#!/usr/bin/env bash
# End-to-end test on a real Kubernetes control plane on loopback (make e2e).
#
#   1. builds bin/etcd, bin/kube-apiserver, bin/kube-controller-manager from
#      the Go module proxy (hack/build-tools.sh; cached in ./bin);
#   2. starts etcd, kube-apiserver (RBAC, certificates from the certs
#      package) and kube-controller-manager on 127.0.0.1, no kubelet;
#   3. runs the Go scenarios in test/e2e (build tag e2e), which install the
#      chart, bootstrap the certificates with bin/certs, run bin/webhook as a
#      local process and assert on pods as the API server stores them;
#   4. tears everything down on exit, failure or Ctrl-C.
#
# The report (scenarios, pass/fail, timings) is printed and written to
# .cache/e2e/report.txt; component logs of the last run are in .cache/e2e/logs.
# Set E2E_KEEP=1 to keep the temporary directory, E2E_RUN=regexp to pick
# scenarios (go test -run syntax, e.g. E2E_RUN='TestE2E/s1').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
OUT=$ROOT/.cache/e2e
T0=$(date +%s.%N)

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
die() {
	log "FAIL: $*"
	exit 1
}

# The control plane talks to itself over loopback; a proxy from the
# environment must not get in the way.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY || true
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# --- binaries -------------------------------------------------------------
log "step 1/4: control-plane binaries (cached in bin/; cold: ~10 min on an idle 2-core machine, ~60 min measured on a heavily shared one)"
TB=$(date +%s.%N)
./hack/build-tools.sh
BUILD_S=$(since "$TB")
for b in webhook certs helm; do
	if [[ ! -x $BIN/$b ]]; then
		log "bin/$b missing: building it (make build bin/helm)"
		make -s build bin/helm
		break
	fi
done

TMP=$(mktemp -d /tmp/dnsguard-e2e.XXXXXX)
mkdir -p "$TMP/logs" "$TMP/pids" "$OUT"
PIDS=()

# cleanup stops every process group we started (newest first: kcm, apiserver,
# etcd) plus any the Go tests registered in $TMP/pids, then removes $TMP.
cleanup() {
	local rc=$? pid f
	trap - EXIT
	# A second Ctrl-C must not abort the teardown half-way.
	trap '' INT TERM
	log "stopping the control plane and the webhook; removing $TMP"
	for f in "$TMP"/pids/*.pid; do
		[[ -f $f ]] && PIDS+=("$(cat "$f")")
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM -- "-${PIDS[i]}" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 -- "-$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
	done
	rm -rf "$OUT/logs"
	cp -r "$TMP/logs" "$OUT/logs" 2>/dev/null || true
	if ((rc != 0)); then
		log "component logs: $OUT/logs (last lines of each follow)"
		for f in "$TMP"/logs/*.log; do
			[[ -f $f ]] || continue
			echo "----- $(basename "$f") (tail) -----"
			tail -n 15 "$f"
		done
	fi
	if [[ ${E2E_KEEP:-} == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# start NAME CMD...: run CMD in its own process group (setsid) so cleanup can
# stop it with all its children; output goes to $TMP/logs/NAME.log.
start() {
	local name=$1
	shift
	setsid "$@" >"$TMP/logs/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	echo $! >"$TMP/$name.pid"
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
	local what=$1 secs=$2 deadline
	shift 2
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if (($(date +%s) >= deadline)); then
			die "$what not ready after ${secs}s"
		fi
		sleep 0.2
	done
}

# --- test binaries --------------------------------------------------------
log "step 2/4: compiling the e2e helpers and scenarios"
go build -o "$TMP/e2ekit" ./test/e2e/e2ekit
go test -c -tags e2e -o "$TMP/e2e.test" ./test/e2e

# --- control plane --------------------------------------------------------
log "step 3/4: starting etcd, kube-apiserver, kube-controller-manager on 127.0.0.1"
TCP=$(date +%s.%N)
# E2E_PORTS="etcd etcd-peer apiserver kcm webhook" pins the loopback ports
# (to run beside another control plane); default: free ports.
if [[ -n ${E2E_PORTS:-} ]]; then
	read -r -a PORTS <<<"$E2E_PORTS"
	((${#PORTS[@]} == 5)) || die "E2E_PORTS needs 5 ports, got '${E2E_PORTS}'"
else
	mapfile -t PORTS < <("$TMP/e2ekit" ports 5)
fi
ETCD_PORT=${PORTS[0]} ETCD_PEER=${PORTS[1]} API_PORT=${PORTS[2]} KCM_PORT=${PORTS[3]} WEBHOOK_PORT=${PORTS[4]}
PKI=$TMP/pki
SERVER=https://127.0.0.1:$API_PORT
"$TMP/e2ekit" pki --dir="$PKI" --server="$SERVER"
KUBECONFIG_FILE=$PKI/admin.kubeconfig

start etcd "$BIN/etcd" \
	--name=e2e --data-dir="$TMP/etcd" \
	--listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
	--initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER" \
	--unsafe-no-fsync --log-level=warn
wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
log "etcd ready on 127.0.0.1:$ETCD_PORT ($(since "$TCP")s)"

start kube-apiserver "$BIN/kube-apiserver" \
	--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
	--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
	--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--authorization-mode=Node,RBAC \
	--service-cluster-ip-range=10.96.0.0/16 \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$PKI/sa.pub" \
	--service-account-signing-key-file="$PKI/sa.key" \
	--allow-privileged=true \
	--endpoint-reconciler-type=none \
	--profiling=false
api() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$SERVER$1"; }
wait_for kube-apiserver 120 api /readyz
log "kube-apiserver ready at $SERVER ($(since "$TCP")s)"

start kube-controller-manager "$BIN/kube-controller-manager" \
	--kubeconfig="$KUBECONFIG_FILE" \
	--authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
	--bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
	--controllers='*' \
	--use-service-account-credentials=true \
	--service-account-private-key-file="$PKI/sa.key" \
	--root-ca-file="$PKI/ca.crt" \
	--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
	--leader-elect=false \
	--profiling=false
# The serviceaccount controller creating "default" in every namespace is the
# sign that kube-controller-manager works: pods need that ServiceAccount.
wait_for kube-controller-manager 120 api /api/v1/namespaces/default/serviceaccounts/default
CP_S=$(since "$TCP")
log "control plane ready in ${CP_S}s (kube-controller-manager created default/default ServiceAccount)"

# --- scenarios ------------------------------------------------------------
log "step 4/4: scenarios (test/e2e, go test -tags e2e)"
REPORT=$TMP/scenarios.txt
set +e
(
	cd test/e2e &&
		E2E_KUBECONFIG="$KUBECONFIG_FILE" E2E_DIR="$TMP" E2E_BIN="$BIN" E2E_ROOT="$ROOT" \
			E2E_WEBHOOK_PORT="$WEBHOOK_PORT" E2E_REPORT="$REPORT" \
			"$TMP/e2e.test" -test.v -test.count=1 -test.timeout=20m ${E2E_RUN:+-test.run="$E2E_RUN"}
) 2>&1 | tee "$TMP/logs/scenarios.log"
RC=${PIPESTATUS[0]}
set -e

{
	echo "dnsguard e2e report ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
	echo "kube-apiserver/kube-controller-manager v1.37.2, etcd v3.7.3, on 127.0.0.1"
	echo "tool build/check: ${BUILD_S}s   control plane start: ${CP_S}s"
	echo
	if [[ -s $REPORT ]]; then cat "$REPORT"; else echo "(no scenario report: the test binary failed before writing it)"; fi
	echo
	echo "total: $(since "$T0")s, go test exit code $RC"
} >"$OUT/report.txt"
echo
cat "$OUT/report.txt"
echo "(report written to $OUT/report.txt)"
exit "$RC"
