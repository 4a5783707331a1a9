#!/usr/bin/env bash
# Build the control-plane binaries the e2e suite runs: bin/kube-apiserver,
# bin/kube-controller-manager (k8s.io/kubernetes v1.37.2 through the tools
# module in hack/tools) and bin/etcd (go.etcd.io/etcd/server/v3 through
# hack/tools/etcd). Everything comes from the Go module proxy.
#
# A binary is rebuilt only when it is missing or its stamp (hash of the go.sum
# of the module it comes from, the Go version and the ldflags) changed, so a
# second run takes well under a second. A cold build takes minutes on two
# cores; progress is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-$PWD/bin}"
K8S_VERSION=v1.37.2
K8S_MAJOR=1
K8S_MINOR=37
mkdir -p "$BIN"

# The version ldflags matter: without them the server reports v0.0.0 and
# kubectl/helm refuse to talk to it (helm charts' kubeVersion checks fail).
K8S_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} \
 -X k8s.io/component-base/version.gitMajor=${K8S_MAJOR} \
 -X k8s.io/component-base/version.gitMinor=${K8S_MINOR} \
 -X k8s.io/component-base/version.gitTreeState=clean"
ETCD_LDFLAGS="-s -w"

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# stamp MODULE_DIR LDFLAGS: what a cached binary must have been built from.
stamp() {
	{ cat "$1/go.mod" "$1/go.sum"; go version; echo "$2"; } | sha256sum | cut -d' ' -f1
}

# fresh NAME STAMP: true when bin/NAME exists and was built from STAMP.
fresh() {
	[[ -x "$BIN/$1" && -f "$BIN/.$1.stamp" && "$(cat "$BIN/.$1.stamp")" == "$2" ]]
}

# build MODULE_DIR LDFLAGS NAME=PKG...: build the stale binaries of one module
# in a single `go build` so shared packages compile once.
build() {
	local dir=$1 ldflags=$2 st names=() pkgs=() pair start
	shift 2
	st=$(stamp "$dir" "$ldflags")
	for pair in "$@"; do
		if fresh "${pair%%=*}" "$st"; then
			log "${pair%%=*}: up to date (stamp ${st:0:12})"
		else
			names+=("${pair%%=*}")
			pkgs+=("${pair#*=}")
		fi
	done
	((${#names[@]})) || return 0
	log "building ${names[*]} from $dir (cold build: several minutes on 2 cores; go build -v lists packages as they compile)"
	start=$(date +%s)
	local out
	out=$(mktemp -d "$BIN/.build.XXXXXX")
	# -v prints each package as it is compiled: the progress a waiting user sees,
	# condensed to one line every 50 packages.
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -v -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}") 2>&1 |
		awk -v tag="[build-tools]" '{n++} n%50==0 {printf "%s %d packages compiled (last: %s)\n", tag, n, $0; fflush()}
			/:[0-9]+:[0-9]+: / || /^#/ {print; fflush()}'
	local rc=${PIPESTATUS[0]}
	if ((rc != 0)); then
		rm -rf "$out"
		log "FAILED building ${names[*]}"
		return "$rc"
	fi
	local name
	for name in "${names[@]}"; do
		mv -f "$out/$name" "$BIN/$name"
		echo "$st" >"$BIN/.$name.stamp"
	done
	rm -rf "$out"
	log "built ${names[*]} in $(($(date +%s) - start))s"
}

total=$(date +%s)
build hack/tools/etcd "$ETCD_LDFLAGS" etcd=.
# One after the other rather than in one go build: the API server is usable
# (and its ~1,900 packages cached) sooner, and most of what
# kube-controller-manager needs is then already compiled.
build hack/tools "$K8S_LDFLAGS" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
build hack/tools "$K8S_LDFLAGS" kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
log "tools ready in $BIN ($(($(date +%s) - total))s)"
