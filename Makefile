# dnsguard — build, run and test.
#
#   make run    build and start the webhook (dev certificates) and the resolver
#   make test   everything CI checks; installs what it needs; idempotent
#
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO      ?= go
BIN     := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
# One set of compiler inputs for every Go command of this module (vet, the
# tests, the test binaries, bin/ and the release's linux/amd64 build): no
# cgo (nothing here uses it; the shipped binaries are static) and -trimpath
# (what the release needs for reproducible binaries). Each variant compiles
# every dependency once more: cold (an empty GOCACHE, modules downloaded,
# at 4a3780c), `go vet -tags e2e,root,chart,faults,apiserver ./...`, then
# `go test -run XXX_NONE ./...`, then `go build ./cmd/webhook ./cmd/resolver
# ./cmd/certs` took 352 + 84 + 225 s with the old mix (cgo for vet and the
# tests, CGO_ENABLED=0 -trimpath for bin/) and 389 + 84 + 1 s with one set;
# the build cache held 2.4 GB, then 1.4 GB.
export GOFLAGS ?= -mod=mod -trimpath
export CGO_ENABLED ?= 0

LDFLAGS_STATIC   := -s -w
CMDS             := webhook resolver certs

.PHONY: all build run test tools-idle checks-before-e2e clockless-checks release-then-e2e-prepare e2e-prepare deps lint unit curl-test resolver-test faults-test nodelocal-test chart-test e2e race-lab race-lab-cluster race-lab-docs fault-matrix fault-matrix-docs bench soak sidecar-resources quota-test compat-test fuzz clean tools helm images test-images release release-test

all: build

## build: static binaries of every command into ./bin
build: $(addprefix $(BIN)/,$(CMDS))

$(BIN)/%: FORCE
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS_STATIC)' -o $@ ./cmd/$*

FORCE:

## run: start the webhook locally with development certificates, and the resolver
run: build
	./hack/run.sh

## test: lint, unit/golden/fuzz-seed tests, curl tests, chart checks, e2e, race lab
# On a cold machine the tools (hack/build-tools.sh: two Kubernetes versions,
# containerd, CoreDNS, helm, promtool, cosign) are half of the run: they build
# at SCHED_IDLE priority beside the suites before the e2e, taking only the
# CPU those leave idle (their sleeps, timeouts and single-threaded steps), so
# no suite's latencies change; a suite that needs a tool first waits for it
# (the tool cache's lock). Warm, the builder only links the cached tools.
test: deps
	$(MAKE) --no-print-directory -j4 --output-sync=target tools-idle checks-before-e2e
	$(MAKE) --no-print-directory e2e E2E_PHASE=run
	@echo "make test: all suites passed"

# tools-idle: the tools, built with only idle CPU (make test).
tools-idle:
	chrt --idle 0 nice -n 19 ./hack/build-tools.sh

# checks-before-e2e: one suite after another, except the race lab (netns):
# it spends most of its three minutes waiting out the clients' 5 s
# timeouts, pinned to one CPU at real-time priority (its clients and servers
# preempt everything else there, which keeps its latencies clean on a busy
# machine), so the checks that assert no latency run beside it (curl, chart,
# quota, release, compat: HTTP answers, rendering, builds, API servers;
# their only clocks are timeouts of 10 s and more), and the e2e's builds
# (hack/e2e.sh prepare).
SERIAL = for t in $(1); do $(MAKE) --no-print-directory $$t || exit 1; done
checks-before-e2e:
	+$(call SERIAL,lint unit resolver-test faults-test nodelocal-test)
	$(MAKE) --no-print-directory race-lab clockless-checks release-then-e2e-prepare

# Beside the race lab, in two lines (make test); both builds of the release
# (make release) stay in one.
clockless-checks:
	+$(call SERIAL,chart-test quota-test compat-test curl-test)
release-then-e2e-prepare:
	+$(call SERIAL,release-test e2e-prepare)

e2e-prepare:
	./hack/e2e.sh prepare

## deps: Debian packages the tests need (skipped when present)
deps:
	./hack/install-deps.sh

## lint: gofmt, go vet (staticcheck joins in hack/lint.sh)
lint:
	./hack/lint.sh

## unit: Go unit, golden and fuzz-seed tests
unit:
	$(GO) test -count=1 ./...
	cd hack/imagebuild && GOFLAGS=-trimpath $(GO) test -count=1 ./...

## curl-test: the real webhook binary over HTTPS, driven by curl and checked with jq
curl-test: build
	./test/curl/run.sh

## resolver-test: the real resolver binary in front of dnsmasq, queried by dig and glibc
resolver-test: build
	./test/resolver/run.sh

## faults-test: upstream loss/outage/garbage, restarts and certificate rotation under load
faults-test: build
	./test/faults/run.sh

## nodelocal-test: node-local cache in network namespaces (interface, NOTRACK, glibc clients, restart and surge handover)
nodelocal-test: build
	./test/nodelocal/run.sh

## chart-test: helm lint/template, Go checks of the rendered manifests, the binaries' /metrics against the rules and dashboard, promtool rule tests
chart-test: $(BIN)/helm $(BIN)/promtool
	./hack/chart-test.sh

## e2e: a real two-node Kubernetes (kubelet, containerd, kube-proxy, CoreDNS) in network namespaces; the chart installed with helm; scenarios in running pods
e2e: build
	./hack/e2e.sh $(E2E_PHASE)

## tools: build the cluster's tools (Kubernetes v1.37.2, etcd, containerd v2, CoreDNS, helm) into the tool cache
tools:
	./hack/build-tools.sh

## race-lab: reproduce the conntrack A/AAAA stall with glibc and musl, and its fixes (network namespaces only); report in .cache/race-lab/netns
race-lab: build
	$(GO) build -o $(BIN)/racelab ./test/racelab/netns
	$(BIN)/racelab

## race-lab-cluster: the race lab on the real node alone (kube-proxy's DNAT, CoreDNS, pods; make e2e runs it after the scenarios); report in .cache/e2e/logs/racelab
race-lab-cluster: build
	E2E_RUN='^TestRaceLab$$' ./hack/e2e.sh

## race-lab-docs: run both race labs and rewrite docs/race-lab.{md,svg} and docs/race-lab-cluster.{md,svg} (no other target touches them)
race-lab-docs:
	@echo "race-lab-docs: rerunning both race labs to rewrite docs/race-lab*.md and .svg"
	RACE_DOCS=1 $(MAKE) race-lab race-lab-cluster

## fault-matrix: the fault matrix on the real node alone (2 % loss, upstream 1,024 pkt/s, CoreDNS and node cache rollouts, upstream outage; four modes x glibc/musl x per-lookup/long-lived; make e2e runs it too); report in .cache/e2e/logs/faultmatrix
fault-matrix: build
	E2E_RUN='^TestFaultMatrix$$' ./hack/e2e.sh

## fault-matrix-docs: run the fault matrix and rewrite docs/fault-matrix.{md,svg} (no other target touches them)
fault-matrix-docs:
	@echo "fault-matrix-docs: rerunning the fault matrix to rewrite docs/fault-matrix.md and .svg"
	FAULT_DOCS=1 $(MAKE) fault-matrix

## bench: benchmarks against real peers, written to docs/benchmarks.md
bench: build
	./hack/bench.sh

## soak: 10-minute resolver soak at a fixed query rate; RSS and goroutines must stay flat
soak: $(BIN)/resolver
	./hack/soak.sh

## sidecar-resources: the sidecar in a pod on the real node under a miss flood (memory cgroup peak, OOM kills, restarts) and CFS-throttled burst latency (root, under the net lock; rewrites docs/sidecar-resources.md)
sidecar-resources: $(BIN)/resolver
	./hack/sidecar-resources.sh

## quota-test: every golden pod of webhook/testdata, and sidecar pods under ResourceQuota/LimitRange, on test/cluster's control plane (bin/kube-apiserver, bin/etcd)
quota-test:
	./hack/quota-test.sh

## compat-test: every API server the chart claims (kube-apiserver v1.29.6 with SidecarContainers on and off, v1.37.2): the chart dry-run created, the webhook binary on sidecar-mode pods, the golden pods on v1.29.6
compat-test:
	./hack/compat-test.sh

## fuzz: run every fuzz target for a bounded time (FUZZTIME, default 30s each)
fuzz:
	./hack/fuzz.sh

# helm, like the cluster's tools, is built by hack/build-tools.sh into the
# tool cache outside the clone (keyed by version and Go version) and linked
# into bin/.
$(BIN)/helm:
	./hack/build-tools.sh helm

$(BIN)/promtool:
	./hack/build-tools.sh promtool

## helm: build ./bin/helm (also made on demand by chart-test and e2e)
helm: $(BIN)/helm

## images: webhook and resolver images for this machine's platform as bin/images/*.tar (the release's builder, hack/imagebuild; multi-arch and signed: make release)
images:
	./hack/images.sh product

## test-images: the e2e suite's images: pause, glibc and musl getaddrinfo clients, busybox, CoreDNS (bin/coredns); list in bin/images/images.txt
test-images: build
	./hack/images.sh test

## release: VERSION=X.Y.Z [DIST=dist]: multi-arch signed images with SBOMs, the chart pinned to them, checksums and notes in DIST/X.Y.Z (README "Releases"); ALLOW_DIRTY=1 for a trial from a modified tree
DIST ?= dist
release:
	./hack/release.sh build "$(VERSION)" "$(DIST)"

## release-test: make release twice (same digests), then the release inspected, published to a loopback registry and verified with cosign, negative controls included (run under the net lock)
release-test:
	cd hack/imagebuild && GOFLAGS=-trimpath $(GO) test -tags releasetest -count=1 -v -timeout 20m ./releasetest

clean:
	rm -rf $(BIN)/webhook $(BIN)/resolver $(BIN)/certs
