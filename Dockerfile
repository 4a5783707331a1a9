# syntax=docker/dockerfile:1
#
# Images for dnsguard: static Go binaries on an empty base, run as non-root.
# For users with a container engine only: releases (`make release`), `make
# images` and the test suites never use this file. They build the same two
# images with hack/imagebuild (product.go: same files, user, entrypoint, port
# and labels), reproducibly and for linux/amd64 and linux/arm64 without an
# engine. Keep the two in step. Two targets:
#
#   docker build --target webhook  -t ghcr.io/dnsguard/webhook:0.2.0  .   # /webhook and /certs
#   docker build --target resolver -t ghcr.io/dnsguard/resolver:0.2.0 .   # /resolver (sidecar, node cache)
#
# The chart runs /webhook and the certificate controller's /certs from the
# webhook image, and injects the resolver image as the sidecar (its exec
# probes call /resolver probe, so the binary must sit at /resolver).
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
ARG VERSION=0.2.0
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
ARG VERSION=0.2.0
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
