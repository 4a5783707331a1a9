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
export GOFLAGS ?= -mod=mod

HELM_VERSION     := v3.22.0
K8S_MINOR        := 37
LDFLAGS_STATIC   := -s -w
CMDS             := webhook resolver certs

.PHONY: all build run test deps lint unit curl-test resolver-test faults-test nodelocal-test chart-test e2e race-lab bench soak sidecar-resources quota-test fuzz clean tools helm images

all: build

## build: static binaries of every command into ./bin
build: $(addprefix $(BIN)/,$(CMDS))

$(BIN)/%: FORCE
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS_STATIC)' -o $@ ./cmd/$*

FORCE:

## run: start the webhook locally with development certificates, and the resolver
run: build
	./hack/run.sh

## test: lint, unit/golden/fuzz-seed tests, curl tests, chart checks, e2e, race lab
test: deps lint unit curl-test resolver-test faults-test nodelocal-test chart-test e2e race-lab
	@echo "make test: all suites passed"

## deps: Debian packages the tests need (skipped when present)
deps:
	./hack/install-deps.sh

## lint: gofmt, go vet (staticcheck joins in hack/lint.sh)
lint:
	./hack/lint.sh

## unit: Go unit, golden and fuzz-seed tests
unit:
	$(GO) test -count=1 ./...

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

## chart-test: helm lint/template and Go checks of the rendered manifests
chart-test: $(BIN)/helm
	./hack/chart-test.sh

## e2e: real kube-apiserver + etcd + kube-controller-manager on loopback
e2e: build $(BIN)/helm
	./hack/e2e.sh

## race-lab: reproduce the conntrack A/AAAA stall with glibc and musl, and its fixes
race-lab: build
	./test/racelab/run.sh

## bench: benchmarks against real peers, written to docs/benchmarks.md
bench: build
	./hack/bench.sh

## soak: 10-minute resolver soak at a fixed query rate; RSS and goroutines must stay flat
soak: $(BIN)/resolver
	./hack/soak.sh

## sidecar-resources: peak RSS and CFS-throttled burst latency of the sidecar (root; docs/sidecar-resources.md)
sidecar-resources: $(BIN)/resolver
	./hack/sidecar-resources.sh

## quota-test: patched pods under ResourceQuota/LimitRange on a real kube-apiserver (bin/kube-apiserver, bin/etcd)
quota-test:
	./hack/quota-test.sh

## fuzz: run every fuzz target for a bounded time (FUZZTIME, default 30s each)
fuzz:
	./hack/fuzz.sh

# helm from the Go module proxy, with the ldflags of helm's own Makefile so it
# does not assume Kubernetes 1.20.
$(BIN)/helm:
	@mkdir -p $(BIN)
	@echo "building helm $(HELM_VERSION) from the Go module proxy (first time only)..."
	GOBIN=$(BIN) GOFLAGS= CGO_ENABLED=0 $(GO) install -ldflags "-s -w \
	  -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(K8S_MINOR) \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(K8S_MINOR)" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## helm: build ./bin/helm (also made on demand by chart-test and e2e)
helm: $(BIN)/helm

## images: container images of the webhook (with certs) and the resolver, where a container engine exists
ENGINE    ?= $(shell command -v docker || command -v podman)
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/dnsguard/Chart.yaml)
images:
	@[ -n "$(ENGINE)" ] || { echo "images: no docker or podman on this machine" >&2; exit 1; }
	$(ENGINE) build --target webhook  -t dnsguard/webhook:$(IMAGE_TAG)  .
	$(ENGINE) build --target resolver -t dnsguard/resolver:$(IMAGE_TAG) .

clean:
	rm -rf $(BIN)/webhook $(BIN)/resolver $(BIN)/certs
