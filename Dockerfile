# syntax=docker/dockerfile:1
#
# Images for dnsguard: static Go binaries on an empty base, run as non-root.
# No container engine runs in this repository's CI: there `make images` builds
# the same two images from bin/ with hack/imagebuild (same files, user,
# entrypoint, port and labels, as image tarballs); with a working docker or
# podman it uses this file. Two targets:
#
#   docker build --target webhook  -t dnsguard/webhook:0.1.0  .   # /webhook and /certs
#   docker build --target resolver -t dnsguard/resolver:0.1.0 .   # /resolver (sidecar)
#
# The chart runs /webhook and the certificate Job's /certs from the webhook
# image, and injects the resolver image as the sidecar (its exec probes call
# /resolver probe, so the binary must sit at /resolver).
#
# BASE defaults to scratch: the binaries are static (CGO_ENABLED=0), need no
# libc, shell, CA store or /etc/passwd (the user is numeric; in-cluster API
# access trusts the ServiceAccount's mounted CA). A distroless "static" nonroot
# image works as well: --build-arg BASE=<that image>.

ARG GO_VERSION=1.26.8
ARG BASE=scratch

FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Dependencies first so source edits do not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags='-s -w' -o /out/ ./cmd/webhook ./cmd/resolver ./cmd/certs

FROM ${BASE} AS resolver
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.source=https://github.com/dnsguard/dnsguard \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.title="dnsguard resolver"
COPY --from=build /out/resolver /resolver
# 65532: the conventional "nonroot" UID; matches the chart's runAsUser and the
# webhook's sidecar runAsUser. Port 53 is bound through the pod sysctl
# net.ipv4.ip_unprivileged_port_start=53, not a capability.
USER 65532:65532
ENTRYPOINT ["/resolver"]

FROM ${BASE} AS webhook
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.source=https://github.com/dnsguard/dnsguard \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.title="dnsguard webhook"
COPY --from=build /out/webhook /webhook
COPY --from=build /out/certs /certs
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/webhook"]
