#!/usr/bin/env bash
# Container images as tarballs in bin/images/, without a container engine.
# Thin glue around hack/imagebuild (the engine-less builder).
#
#   hack/images.sh          product images: webhook (with /certs), resolver   (make images)
#   hack/images.sh test     the e2e suite's images only: pause, the glibc and   (make test-images)
#                           musl getaddrinfo clients, CoreDNS (if bin/coredns)
#
# Product images come from the release's builder (`imagebuild product`:
# the same compile flags, files and labels as `make release`, for this
# machine's platform only), named as the chart's defaults name them
# (ghcr.io/dnsguard/NAME:TAG), so a suite that imports tarballs runs the
# release's images. Test images come from hack/imagebuild too: they carry
# this machine's glibc. Every image is written as bin/images/NAME.tar
# (loadable by `ctr -n k8s.io images import`, `docker load`, `podman
# load`), and bin/images/images.txt lists "REFERENCE FILE" per line for the
# harness.
#
# Environment: IMAGE_TAG (default: the chart's appVersion), IMAGES_DIR
# (bin/images), COREDNS_BIN (bin/coredns), COREDNS_IMAGE
# (registry.k8s.io/coredns/coredns:v1.15.0), PAUSE_IMAGE
# (registry.k8s.io/pause:3.10.1), SOURCE_DATE_EPOCH (default: the last
# commit's time, so rebuilding a commit gives identical digests).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh images
ROOT=$PWD
BIN=${BIN:-$ROOT/bin}
WHAT=${1:-product}
case $WHAT in product|test) ;; *) echo "usage: $0 [product|test]" >&2; exit 2 ;; esac

OUT=${IMAGES_DIR:-$BIN/images}
TAG=${IMAGE_TAG:-$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/dnsguard/Chart.yaml)}
# The test images' names; the product images are named by imagebuild.
REPO=dnsguard
COREDNS_BIN=${COREDNS_BIN:-$BIN/coredns}
COREDNS_IMAGE=${COREDNS_IMAGE:-registry.k8s.io/coredns/coredns:v1.15.0}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.1}
SOURCE=https://github.com/dnsguard/dnsguard
PLATFORM=linux/$(go env GOARCH)
[ -n "$TAG" ] || die "no IMAGE_TAG and no appVersion in charts/dnsguard/Chart.yaml"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)

mkdir -p "$OUT"
LIST=$OUT/images.txt
: >"$LIST.tmp"

# The builder and pause are small Go programs of their own module; go build's
# cache makes this a no-op when nothing changed.
log "building bin/imagebuild and bin/pause (hack/imagebuild)"
(cd hack/imagebuild && GOFLAGS= CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/imagebuild" . \
  && GOFLAGS= CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/pause" ./pause)

labels=(--label "org.opencontainers.image.version=$TAG" --label "org.opencontainers.image.source=$SOURCE"
  --label "org.opencontainers.image.revision=$REVISION")

# ib FILE REF ARGS...: one image through hack/imagebuild, listed in images.txt.
ib() {
  local file=$OUT/$1.tar ref=$2
  shift 2
  "$BIN/imagebuild" --name "$ref" --out "$file" --platform "$PLATFORM" "$@"
  echo "$ref $file" >>"$LIST.tmp"
}

# ---- product images: the release's, for this platform ---------------------
if [ "$WHAT" = product ]; then
  log "building the product images for $PLATFORM with imagebuild product (the release's code)"
  "$BIN/imagebuild" product --tag "$TAG" --out "$OUT" >>"$LIST.tmp"
fi

# ---- e2e images ----------------------------------------------------------
if [ "$WHAT" = test ]; then
  log "building the e2e images with hack/imagebuild (pause, glibc and musl clients, CoreDNS)"
  for t in gcc musl-gcc ldd getent; do
    command -v "$t" >/dev/null || die "missing $t (run make deps)"
  done
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT

  # containerd's default sandbox image; the real one runs as 65535 too.
  ib pause "$PAUSE_IMAGE" --file "$BIN/pause:/pause" --entrypoint /pause --user 65535:65535 \
    --label "org.opencontainers.image.title=pause (dnsguard e2e)"

  # The race lab's getaddrinfo client and the e2e "application" (podapp:
  # resolves its arguments at start, then waits for SIGTERM), built the same
  # two ways; busybox's cat for reading /etc/resolv.conf in the container.
  command -v busybox >/dev/null || die "missing busybox (run make deps)"
  BUSYBOX=$(command -v busybox)
  gcc -O2 -Wall -Wextra -Werror -o "$WORK/gailoop-glibc" test/racelab/gailoop.c
  musl-gcc -O2 -Wall -Wextra -Werror -static -o "$WORK/gailoop-musl" test/racelab/gailoop.c
  gcc -O2 -Wall -Wextra -Werror -o "$WORK/podapp-glibc" test/e2e/podapp/podapp.c
  musl-gcc -O2 -Wall -Wextra -Werror -static -o "$WORK/podapp-musl" test/e2e/podapp/podapp.c
  printf 'hosts: files dns\n' >"$WORK/nsswitch.conf"
  ib test-client-glibc "$REPO/test-client-glibc:$TAG" --with-libs \
    --file "$WORK/gailoop-glibc:/gailoop" --file "$WORK/podapp-glibc:/podapp" --file "$(command -v getent):/getent" \
    --file "$WORK/nsswitch.conf:/etc/nsswitch.conf:0644" --file "$BIN/pause:/pause" --file "$BUSYBOX:/bin/cat" \
    --entrypoint /pause --user 65532:65532 "${labels[@]}" \
    --label "org.opencontainers.image.title=getaddrinfo client, glibc $(ldd --version | head -1 | awk '{print $NF}') (dnsguard e2e)"
  ib test-client-musl "$REPO/test-client-musl:$TAG" \
    --file "$WORK/gailoop-musl:/gailoop" --file "$WORK/podapp-musl:/podapp" --file "$BIN/pause:/pause" --file "$BUSYBOX:/bin/cat" \
    --entrypoint /pause --user 65532:65532 "${labels[@]}" \
    --label "org.opencontainers.image.title=getaddrinfo client, musl static (dnsguard e2e)"
  # The chart's `helm test` pod needs a POSIX shell, grep, awk and
  # nslookup: Debian's static busybox, one copy per applet name (busybox
  # picks the applet from argv[0]; the builder adds regular files only).
  bb=()
  for a in sh cat grep awk nslookup echo; do bb+=(--file "$BUSYBOX:/bin/$a"); done
  ib test-busybox "$REPO/test-busybox:$TAG" "${bb[@]}" --entrypoint /bin/sh --user 65534:65534 "${labels[@]}" \
    --label "org.opencontainers.image.title=busybox $(busybox 2>&1 | head -1 | awk '{print $2}') from Debian (dnsguard e2e helm test)"

  if [ -x "$COREDNS_BIN" ]; then
    # Runs as root: binding :53 as non-root needs a file capability
    # (setcap in CoreDNS's own Dockerfile), which these layers do not carry.
    ib coredns "$COREDNS_IMAGE" --file "$COREDNS_BIN:/coredns" --entrypoint /coredns --user 0:0 \
      --port 53/udp --port 53/tcp \
      --label "org.opencontainers.image.title=CoreDNS (dnsguard e2e)"
  else
    log "no $COREDNS_BIN (hack/build-tools.sh builds it): CoreDNS image skipped"
  fi
fi

mv "$LIST.tmp" "$LIST"
log "wrote $LIST:"
sed 's/^/  /' "$LIST"
