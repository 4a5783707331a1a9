#!/usr/bin/env bash
# make compat-test: dnsguard against every API server it claims (test/compat,
# build tag apiserver): kube-apiserver v1.29.6 (the chart's kubeVersion
# floor) with SidecarContainers on and off, and v1.37.2, each as
# test/cluster's control plane (etcd and kube-apiserver in their own network
# namespace, no node), started once and in turn: the chart rendered for that
# version and dry-run created, the webhook binary on sidecar-mode pods
# (native sidecar, or dnsconfig with a warning where the server drops it),
# and webhook/testdata's golden pods on v1.29.6. Takes test/cluster's
# machine-wide lock; component logs land in .cache/compat/logs/SERVER.
set -euo pipefail
cd "$(dirname "$0")/.."
# From the tool cache (built once per machine; linked into bin/).
./hack/build-tools.sh etcd kube-apiserver kube-apiserver-1.29 helm
export CLUSTER_BIN=$PWD/bin
export COMPAT_LOG_DIR=$PWD/.cache/compat/logs
# The API server is reached inside its namespace, never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY || true
exec go test -tags apiserver -count=1 -v -timeout 15m ./test/compat
