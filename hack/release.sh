#!/usr/bin/env bash
# Releases: thin glue around hack/imagebuild (the logic is Go there).
#
#   hack/release.sh build VERSION [DIST]     make release VERSION=X.Y.Z [DIST=dist]
#       DIST/VERSION/: images/{webhook,resolver}/ (OCI layouts: the
#       linux/amd64+arm64 index, its cosign signature and SBOM attestation),
#       dnsguard-VERSION.tgz (images pinned by digest) and chart/ (its OCI
#       manifest and signature), sbom/, cosign.pub,
#       images.txt, notes.md, SHA256SUMS. Refuses a dirty tree unless
#       ALLOW_DIRTY=1. Signs with $DNSGUARD_RELEASE_KEY (+ COSIGN_PASSWORD),
#       else with this machine's local key (the log says so).
#   hack/release.sh publish DIR HOST:PORT    push a release into a plain-HTTP registry:
#       HOST:PORT/dnsguard/{webhook,resolver}:VERSION, oci://HOST:PORT/dnsguard/charts/dnsguard
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh release
BIN=$PWD/bin

usage() { die "usage: $0 build VERSION [DIST] | publish DIR HOST:PORT"; }
[ $# -ge 1 ] || usage

./hack/build-tools.sh cosign registry helm >&2
(cd hack/imagebuild && GOFLAGS= CGO_ENABLED=0 go build -trimpath -o "$BIN/imagebuild" .)

case $1 in
build)
  [ $# -ge 2 ] && [ -n "$2" ] || die "VERSION is required: make release VERSION=X.Y.Z"
  exec "$BIN/imagebuild" release --version "$2" --dist "${3:-dist}" --bin "$BIN" \
    ${ALLOW_DIRTY:+--allow-dirty=$([ "$ALLOW_DIRTY" = 1 ] && echo true || echo false)} \
    --command "make release VERSION=$2${3:+ DIST=$3}"
  ;;
publish)
  [ $# -eq 3 ] || usage
  exec "$BIN/imagebuild" publish --bin "$BIN" "$2" "$3"
  ;;
*) usage ;;
esac
