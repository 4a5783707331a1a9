#!/usr/bin/env bash
# make quota-test: what the webhook writes, in front of a real kube-apiserver
# (test/quota, build tag apiserver) on test/cluster's control plane (etcd and
# kube-apiserver in their own network namespace, no node): every golden pod
# of webhook/testdata dry-run created (the API server's own validation), and
# the sidecar's resources under ResourceQuota/LimitRange, QoS Guaranteed
# kept, per-namespace annotation. Takes test/cluster's machine-wide lock.
set -euo pipefail
cd "$(dirname "$0")/.."
# From the tool cache (built once per machine; linked into bin/).
./hack/build-tools.sh etcd kube-apiserver
export CLUSTER_BIN=$PWD/bin
# The API server is reached inside its namespace, never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY || true
exec go test -tags apiserver -count=1 -v -timeout 10m ./test/quota
