#!/usr/bin/env bash
# End-to-end tests on a real two-node Kubernetes (make e2e): thin glue.
#
#   1. hack/build-tools.sh: control plane, kubelet, kube-proxy, kubectl,
#      containerd v2, CoreDNS, helm from the Go module proxy, cached outside
#      the clone (~/.cache/dnsguard-tools, keyed by version and Go version);
#   2. the release under test: make release VERSION=<the tree's chart
#      version> DIST=.cache/e2e/dist (signed multi-arch images, the chart
#      pinned to their digests; the suite pushes it into the node's registry
#      and installs from there); the previous release of CHANGELOG.md built
#      from its commit (hack/imagebuild previous, cached by commit in the tool
#      cache); the test images (pause, CoreDNS, glibc and musl clients,
#      busybox) as tarballs in .cache/e2e/images, imported at start;
#   3. dgcluster run --nodes 2 (test/cluster): each node in a network
#      namespace of its own (the second tainted, so only the two-node
#      scenario n1, fault (e) of the fault matrix and the node cache run
#      there), an OCI registry in
#      the first, the scenarios (test/e2e, go
#      test -tags e2e) and then the race lab on the node (TestRaceLab, report
#      in .cache/e2e/logs/racelab) inside it, then a teardown that must leave
#      nothing behind.
#
# E2E_RUN=regexp picks scenarios (go test -run syntax, e.g. 'TestE2E/c[01]$';
# c0 installs; '^TestRaceLab$' is make race-lab-cluster). E2E_KEEP=1 keeps the run directory.
# E2E_NODES=1|2 is the node count (default 2; with 1, n1 skips).
# E2E_IP_FAMILIES=dual|ipv4: a dual-stack (default) or IPv4-only cluster.
# E2E_PROXY_MODE=iptables|nftables is kube-proxy's mode (default iptables);
# the last scenario of a full run (k1, TestSwitchProxyMode) switches it to
# the other mode and runs c6 and the race lab's rows again there.
# The report is printed and written to .cache/e2e/report.txt, the logs of
# the last run to .cache/e2e/.
#
# Usage: hack/e2e.sh [prepare|run]: steps 1-2 only, or step 3 only on what
# prepare left in .cache/e2e (make test prepares beside the race lab, which
# needs no cluster; the default is both).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
OUT=$ROOT/.cache/e2e
T0=$(date +%s)
. hack/lib.sh e2e
PHASE=${1:-all}
# A make this script starts is not a sub-make of the make that may have run
# it: it gets no jobserver, and would say so.
unset MAKEFLAGS MFLAGS
case $PHASE in
all | prepare | run) ;;
*) die "hack/e2e.sh $PHASE: want prepare, run or nothing" ;;
esac
PROXY_MODE=${E2E_PROXY_MODE:-iptables}
NODES=${E2E_NODES:-2}
case $PROXY_MODE in
iptables | nftables) ;;
*) die "E2E_PROXY_MODE=$PROXY_MODE: want iptables or nftables" ;;
esac
# E2E_IP_FAMILIES=dual (default): IPv4+IPv6, IPv4 primary (d1 needs it);
# ipv4: IPv4 only (d1 fails, saying so).
IP_FAMILIES=${E2E_IP_FAMILIES:-dual}
case $IP_FAMILIES in
dual) DUAL_FLAG=--dual-stack ;;
ipv4) DUAL_FLAG=--dual-stack=false ;;
*) die "E2E_IP_FAMILIES=$IP_FAMILIES: want dual or ipv4" ;;
esac

# Everything the suite talks to is inside the node namespace; a proxy from
# the environment must not get in the way.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY || true
export NO_PROXY='*' no_proxy='*'

VERSION=$(sed -n 's/^version: *"\{0,1\}\([^" ]*\)"\{0,1\} *$/\1/p' charts/dnsguard/Chart.yaml)
[[ -n $VERSION ]] || die "no version in charts/dnsguard/Chart.yaml"
# prepare: steps 1 and 2; the previous release's directory goes to
# $OUT/prepared for the run.
prepare() {
	log "step 1/3: tools (cached in ${DNSGUARD_TOOLS_CACHE:-~/.cache/dnsguard-tools}; cold: ~15 min on an idle 2-core machine)"
	./hack/build-tools.sh
	log "step 2/3: the release under test ($VERSION), the previous release, test images, test binaries"
	rm -f "$OUT/prepared"
	# make test built bin/ before preparing beside the race lab and
	# curl-test, which run those binaries: rebuilding them there is what
	# prepare must not do.
	[[ $PHASE == prepare ]] || make -s build
	# The working tree is what is tested, committed or not.
	ALLOW_DIRTY=1 make -s release VERSION="$VERSION" DIST="$OUT/dist"
	# dnsguard's own images reach the node only through its registry, from
	# the release; the directory holds the test images only.
	rm -rf "$OUT/images"
	IMAGES_DIR=$OUT/images ./hack/images.sh test
	# make release built bin/imagebuild.
	"$BIN/imagebuild" previous --repo "$ROOT" --helm "$BIN/helm" >"$OUT/prepared.tmp"
	go build -o "$BIN/dgcluster" ./test/cluster/dgcluster
	go test -c -tags e2e -o "$BIN/e2e.test" ./test/e2e
	mv "$OUT/prepared.tmp" "$OUT/prepared"
}

mkdir -p "$OUT"
if [[ $PHASE == run ]]; then
	BUILD_S="prepared before"
else
	prepare
	BUILD_S="$(($(date +%s) - T0))s"
	if [[ $PHASE == prepare ]]; then
		log "prepared in $BUILD_S"
		exit 0
	fi
fi
PREV=$(cat "$OUT/prepared" 2>/dev/null) || die "nothing prepared in $OUT: run hack/e2e.sh prepare first"

log "step 3/3: cluster up, scenarios, teardown"
rm -rf "$OUT/logs"
set +e
E2E_ROOT=$ROOT E2E_BIN=$BIN E2E_LOGS=$OUT/logs E2E_REPORT=$OUT/scenarios.txt \
	E2E_RELEASE_DIR=$OUT/dist/$VERSION E2E_PREV_RELEASE=$PREV \
	"$BIN/dgcluster" run --bin "$BIN" --images "$OUT/images" --log-dir "$OUT/cluster-logs" --proxy-mode "$PROXY_MODE" --nodes "$NODES" "$DUAL_FLAG" ${E2E_KEEP:+--keep} -- \
	"$BIN/e2e.test" -test.v -test.count=1 -test.timeout=40m ${E2E_RUN:+-test.run="$E2E_RUN"} 2>&1 | tee "$OUT/run.log"
RC=${PIPESTATUS[0]}
set -e
{
	echo "dnsguard e2e report ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
	echo "Kubernetes v1.37.2 (kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy in $PROXY_MODE mode at start, each scenario's mode below), IP families: $IP_FAMILIES, etcd v3.7.3,"
	echo "containerd v2.2.9 + runc $(runc --version 2>/dev/null | head -1 | awk '{print $3}') + CNI bridge, CoreDNS v1.15.0; $NODES node(s), each in its own network namespace"
	grep -E '^\[cluster .*(cluster up in|done in|cluster down in|kube-proxy restarted in)' "$OUT/run.log" | sed 's/^/  /' || true
	echo "release $VERSION ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo +dirty)), previous release $(basename "$PREV" | cut -c1-12): tools, releases and images ${BUILD_S}"
	echo
	if [[ -s $OUT/scenarios.txt ]]; then cat "$OUT/scenarios.txt"; else echo "(no scenario report: the run stopped before the scenarios)"; fi
	echo
	echo "total: $(($(date +%s) - T0))s, exit code $RC"
} >"$OUT/report.txt"
echo
cat "$OUT/report.txt"
exit "$RC"
