#!/usr/bin/env bash
# make quota-test: the webhook's sidecar resources against a real
# kube-apiserver + etcd on loopback (no kubelet): ResourceQuota on
# limits.cpu/limits.memory, LimitRange min/max/maxLimitRequestRatio, QoS
# Guaranteed kept, per-namespace annotation (test/quota, build tag apiserver).
# Ports: etcd 127.0.0.1:33790-33791, kube-apiserver 127.0.0.1:36443.
# KUBE_APISERVER and ETCD default to bin/ (hack/build-tools.sh puts them there).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBE_APISERVER=${KUBE_APISERVER:-$PWD/bin/kube-apiserver} ETCD=${ETCD:-$PWD/bin/etcd}
for b in "$KUBE_APISERVER" "$ETCD"; do
  [ -x "$b" ] || { echo "quota-test: $b missing (hack/build-tools.sh builds it)" >&2; exit 1; }
done
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY || true
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
cd test/quota
exec go test -tags apiserver -count=1 -v -timeout 10m .
