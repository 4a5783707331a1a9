#!/usr/bin/env bash
# Build the tools the e2e suite and the chart tests run, all from the Go module
# proxy, into a cache outside the clone, and link them into bin/:
#
#   etcd                                      hack/tools/etcd
#   kube-apiserver kube-controller-manager    hack/tools (k8s.io/kubernetes v1.37.2)
#   kube-scheduler kubelet kube-proxy kubectl
#   kube-apiserver-1.29                       hack/tools/k8s-oldest (k8s.io/kubernetes v1.29.6):
#                                             the oldest API server the chart claims, for test/compat
#   containerd ctr containerd-shim-runc-v2    hack/tools/containerd (v2)
#   coredns                                   hack/tools/coredns (v1.15.0, the plugins in plugins.go)
#   helm                                      go install helm.sh/helm/v3 (see Makefile)
#   cosign                                    hack/tools/cosign (v2): signs and verifies releases
#   registry                                  hack/tools/registry (distribution v3): the e2e's loopback registry
#   promtool                                  hack/tools/promtool (Prometheus): the chart's rule tests
#   staticcheck                               go install honnef.co/go/tools/cmd/staticcheck: make lint
#
# The cache ($DNSGUARD_TOOLS_CACHE, default ~/.cache/dnsguard-tools) holds one
# directory per binary and stamp; the stamp hashes the module's go.mod/go.sum
# (and CoreDNS's plugins.go), the Go version, the ldflags and the build tags,
# so a fresh clone on a used machine reuses what is there and a version bump
# builds anew. A cold build takes minutes on two cores; progress is printed.
#
# Usage: hack/build-tools.sh [NAME...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-$PWD/bin}"
CACHE="${DNSGUARD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dnsguard-tools}"
K8S_VERSION=v1.37.2
K8S_MAJOR=1
K8S_MINOR=37
# The chart's kubeVersion floor (>=1.29): only its API server is built
# (test/compat runs admission against it; a kubelet would double the cold
# build for a node nothing here needs).
K8S_OLDEST_VERSION=v1.29.6
K8S_OLDEST_MINOR=29
HELM_VERSION=v3.22.0
STATICCHECK_VERSION=v0.8.2
mkdir -p "$BIN" "$CACHE"

# The version ldflags matter: without them the components report v0.0.0 and
# kubectl/helm refuse to talk to them (charts' kubeVersion checks fail).
K8S_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} \
 -X k8s.io/component-base/version.gitMajor=${K8S_MAJOR} \
 -X k8s.io/component-base/version.gitMinor=${K8S_MINOR} \
 -X k8s.io/component-base/version.gitTreeState=clean"
K8S_OLDEST_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=${K8S_OLDEST_VERSION} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${K8S_OLDEST_MINOR} \
 -X k8s.io/component-base/version.gitTreeState=clean"
# providerless: Kubernetes' own tag that leaves out the in-tree cloud
# providers; without it v1.29 links k8s.io/legacy-cloud-providers, whose
# v0.29.6 the module proxy here does not serve (403), and the API server
# needs no cloud provider.
K8S_OLDEST_TAGS="providerless"
# helm's own Makefile sets these; without them it assumes Kubernetes 1.20.
HELM_LDFLAGS="-s -w \
 -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${K8S_MAJOR} \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${K8S_MINOR} \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${K8S_MAJOR} \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${K8S_MINOR}"
CONTAINERD_TAGS="no_btrfs no_devmapper urfave_cli_no_docs"

. hack/lib.sh build-tools

# stamp KEY...: what a cached binary must have been built from.
stamp() {
	{ printf '%s\n' "$@"; go version; } | sha256sum | cut -c1-16
}

# link NAME DIR: bin/NAME points at the cached binary. Suites run bin/
# tools while another build-tools links them (make test runs several at
# once): the link is replaced by a rename, never missing for a moment.
link() {
	[[ $(readlink "$BIN/$1" 2>/dev/null) != "$2/$1" ]] || return 0
	ln -sfn "$2/$1" "$BIN/.$1.$$"
	mv -Tf "$BIN/.$1.$$" "$BIN/$1"
}

# build MODULE_DIR TAGS LDFLAGS NAME=PKG...: build the binaries of one module
# that are not cached, in a single `go build` so shared packages compile once.
# NAME may differ from the command's own name (kube-apiserver-1.29 is
# k8s.io/kubernetes/cmd/kube-apiserver of another module).
build() {
	local dir=$1 tags=$2 ldflags=$3 st names=() pkgs=() pair name lock
	shift 3
	local src=("$dir/go.mod" "$dir/go.sum")
	# CoreDNS's plugins.go chooses what is compiled in.
	[[ ! -e $dir/plugins.go ]] || src+=("$dir/plugins.go")
	st=$(stamp "$(cat "${src[@]}")" "$tags" "$ldflags")
	missing() {
		names=() pkgs=()
		for pair in "$@"; do
			name=${pair%%=*}
			if [[ -n ${WANT[$name]:-} || ${#WANT[@]} -eq 0 ]]; then
				if [[ -x $CACHE/$name/$st/$name ]]; then
					link "$name" "$CACHE/$name/$st"
				else
					names+=("$name")
					pkgs+=("${pair#*=}")
				fi
			fi
		done
	}
	missing "$@"
	((${#names[@]})) || return 0
	# make test builds the tools in the background (SCHED_IDLE) while the
	# suites before the e2e run, and those suites ask for some of them: the
	# second caller waits for the first one's build instead of repeating it.
	exec {lock}>"$CACHE/.lock-$st"
	if ! flock -n "$lock"; then
		log "waiting for another build of ${names[*]} (${st})"
		flock "$lock"
	fi
	missing "$@"
	if ((${#names[@]} == 0)); then
		exec {lock}>&-
		return 0
	fi
	log "building ${names[*]} from $dir into $CACHE (cold: minutes on 2 cores; a line every 100 packages)"
	local start out rc
	start=$(date +%s)
	out=$(mktemp -d "$CACHE/.build.XXXXXX")
	set +e
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -v -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/" "${pkgs[@]}") 2>&1 |
		awk -v tag="[build-tools]" '{n++} n%100==0 {printf "%s %d packages compiled (last: %s)\n", tag, n, $0; fflush()}
			/:[0-9]+:[0-9]+: / || /^#/ {print; fflush()}'
	rc=${PIPESTATUS[0]}
	set -e
	if ((rc != 0)); then
		rm -rf "$out"
		exec {lock}>&-
		log "FAILED building ${names[*]}"
		return "$rc"
	fi
	local i src
	for i in "${!names[@]}"; do
		name=${names[i]}
		src=$out/$name
		[[ -e $src ]] || src=$out/$(basename "${pkgs[i]}")
		mkdir -p "$CACHE/$name/$st"
		mv -f "$src" "$CACHE/$name/$st/$name"
		link "$name" "$CACHE/$name/$st"
	done
	rm -rf "$out"
	exec {lock}>&-
	log "built ${names[*]} in $(($(date +%s) - start))s"
}

# build_install NAME VERSION LDFLAGS PKG: a command built by `go install
# PKG@VERSION` (its module's own go.mod, not hack/tools), cached by version.
build_install() {
	local name=$1 version=$2 ldflags=$3 pkg=$4
	[[ -n ${WANT[$name]:-} || ${#WANT[@]} -eq 0 ]] || return 0
	local st dir
	st=$(stamp "$name $version" "$ldflags")
	dir=$CACHE/$name/$st
	if [[ ! -x $dir/$name ]]; then
		local lock
		exec {lock}>"$CACHE/.lock-$st"
		flock "$lock"
		if [[ ! -x $dir/$name ]]; then
			log "building $name $version"
			mkdir -p "$dir/.tmp"
			# Installed beside, then moved: a waiting caller never links a
			# half-written binary.
			GOBIN="$dir/.tmp" GOFLAGS= GOWORK=off CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg@$version"
			mv -f "$dir/.tmp/$name" "$dir/$name"
			rm -rf "$dir/.tmp"
		fi
		exec {lock}>&-
	fi
	link "$name" "$dir"
}

declare -A WANT=()
for n in "$@"; do WANT[$n]=1; done

total=$(date +%s)
# In the order the suites of make test first need them: chart-test (helm,
# promtool), quota-test (etcd, the API server), release-test (cosign,
# registry), compat-test (the oldest API server), then what only the e2e
# runs.
build_install helm "$HELM_VERSION" "$HELM_LDFLAGS" helm.sh/helm/v3/cmd/helm
# make lint's; cached here like the others instead of rebuilt in every clone.
build_install staticcheck "$STATICCHECK_VERSION" "-s -w" honnef.co/go/tools/cmd/staticcheck
build hack/tools/promtool "remove_all_sd" "-s -w" promtool=github.com/prometheus/prometheus/cmd/promtool
build hack/tools/etcd "" "-s -w" etcd=.
# The API server before the other components: most of what they need is
# compiled by then.
build hack/tools "" "$K8S_LDFLAGS" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
build hack/tools/cosign "" "-s -w" cosign=github.com/sigstore/cosign/v2/cmd/cosign
build hack/tools/registry "" "-s -w" registry=github.com/distribution/distribution/v3/cmd/registry
build hack/tools/k8s-oldest "$K8S_OLDEST_TAGS" "$K8S_OLDEST_LDFLAGS" \
	kube-apiserver-1.29=k8s.io/kubernetes/cmd/kube-apiserver
build hack/tools/containerd "$CONTAINERD_TAGS" "-s -w" \
	containerd=github.com/containerd/containerd/v2/cmd/containerd \
	ctr=github.com/containerd/containerd/v2/cmd/ctr
# The shim is built without gRPC (ttrpc only), as containerd's own Makefile does.
build hack/tools/containerd "no_grpc" "-s -w" \
	containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
build hack/tools "" "$K8S_LDFLAGS" \
	kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
	kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
	kubelet=k8s.io/kubernetes/cmd/kubelet \
	kube-proxy=k8s.io/kubernetes/cmd/kube-proxy \
	kubectl=k8s.io/kubernetes/cmd/kubectl
build hack/tools/coredns "" "-s -w" coredns=.
log "tools ready in $BIN -> $CACHE ($(($(date +%s) - total))s)"
