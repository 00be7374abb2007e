# policyd — see README.md. Every target works from a clean checkout; targets
# that touch the kernel (demo, conformance, test) need root.
GO        ?= go
BIN       := bin/policyd
PKGS      := ./...
TESTFLAGS ?= -count=1 -timeout 25m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# golangci-lint builds from source through `go run` like staticcheck: about
# 2 minutes on a cold 2-core machine (empty module and build caches), ~1 s after.
# Its linters are chosen, and their exclusions justified, in .golangci.yml.
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
# policyd version and --version report these; without them the binary falls
# back to the VCS revision Go records, then to "dev".
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all deps tools build cross image test test-unit verify bench fuzz soak demo conformance kind-conformance e2e cluster-tools clean

all: build

## deps: install nftables and iproute2 if missing (Debian, as root).
deps:
	@./hack/deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/policyd

## cross: the CLI for every platform the krew manifest (deploy/krew/policyd.yaml)
## lists, CGO-free, into bin/cross/OS_ARCH/policyd[.exe]; then go vet, as darwin
## and as windows, of every package the CLI builds from. run, lab and cleanup
## are Linux-only (elsewhere they exit 2 saying so); a Linux-only import in any
## other verb's packages fails here.
CROSS_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
cross:
	@set -e; for p in $(CROSS_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  out=bin/cross/$${os}_$${arch}/policyd$$ext; echo "build $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/policyd; \
	done
	@set -e; for os in darwin windows; do \
	  echo "vet GOOS=$$os"; \
	  GOOS=$$os GOARCH=amd64 CGO_ENABLED=0 $(GO) vet $$(GOOS=$$os GOARCH=amd64 CGO_ENABLED=0 $(GO) list -deps ./cmd/policyd | grep '^github.com/policyd/policyd'); \
	done

## demo: the lab on examples/: the matrix without policies, then with them.
## The last line is the verdict, so that whoever runs it need not read the tables.
demo: deps build
	@echo "./$(BIN) lab --manifests examples/"
	@./$(BIN) lab --manifests examples/; rc=$$?; \
	if [ $$rc -eq 0 ]; then echo "demo: OK: every probed packet did what the policies say"; \
	else echo "demo: FAILED: policyd lab exited $$rc (see above)"; fi; exit $$rc

## tools: kube-apiserver and etcd for the integration tests (built once, ~8 min cold, then cached).
tools:
	@./hack/apiserver.sh >/dev/null

## test: every test; kernel tests need root (CI=true turns their skips into failures).
test: deps build tools
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-unit: the tests that need neither root nor the kernel.
test-unit:
	$(GO) test -count=1 -short $(PKGS)

## test-integration: tests against a real kube-apiserver and etcd (built once by
## hack/apiserver.sh, ~8 min cold, then cached; CI=true turns skips into failures).
.PHONY: test-integration
test-integration:
	dir=$$(./hack/apiserver.sh) && POLICYD_TOOLS_DIR="$$dir" $(GO) test -count=1 -timeout 30m ./internal/apiservertest/... ./deploy/... ./agent/...

## conformance: both suites (v1 NetworkPolicy cases, ClusterNetworkPolicy tests), routed and bridged,
## direct and through ClusterIPs, 2 nodes; every denied probe's kernel log record must name the
## decider explain names (--verdicts), and in two modes every allowed probe's too (--log-allowed).
conformance: deps build
	./$(BIN) lab --conformance --cni routed  --nodes 2        --verdicts --log-allowed
	./$(BIN) lab --conformance --cni routed  --nodes 2 --dnat --verdicts
	./$(BIN) lab --conformance --cni bridged --nodes 2        --verdicts
	./$(BIN) lab --conformance --cni bridged --nodes 2 --dnat --verdicts --log-allowed

## image: the DaemonSet's image with docker (VERSION and COMMIT as for build;
## IMAGE=registry.example/policyd:v0.1.0 to name it). Multi-arch: see the Dockerfile.
IMAGE ?= policyd:latest
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

## kind-conformance: make e2e's upstream suites on kind (needs Docker; not run in CI here).
kind-conformance:
	./hack/kind-conformance.sh

## cluster-tools: the real cluster's binaries (hack/cluster.sh: built once, ~25 min cold, then cached).
cluster-tools:
	@./hack/cluster.sh >/dev/null

## e2e: policyd on a real two-node cluster in network namespaces (kubelet, containerd,
## kube-proxy, CNI), deployed with kubectl apply -k deploy/, judged by the upstream
## e2e.test Netpol specs and the network-policy-api conformance tests, plus the
## DaemonSet lifecycle tests; JUnit files in e2e-report/. Needs root.
## E2E_SHAPE=routed: the ptp CNI plugin and kube-proxy in iptables mode
## (default bridge: the bridge plugin and kube-proxy in nftables mode).
E2E_SHAPE ?= bridge
e2e: deps
	E2E_SHAPE=$(E2E_SHAPE) ./e2e/run.sh

## verify: gofmt, vet, staticcheck, golangci-lint, make cross, and hack/sealedcheck: every
## switch over a sealed set (rule shapes, step kinds, decider kinds; listed
## in its main.go) names every member.
verify:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) run $(GOLANGCI_LINT) run $(PKGS)
	$(MAKE) --no-print-directory cross CROSS_PLATFORMS="darwin/amd64 darwin/arm64 windows/amd64"
	$(GO) run ./hack/sealedcheck

## bench: benchmarks with baselines from the same run, into BENCHMARKS.md.
bench: deps build
	./hack/bench.sh

## soak: the pod-churn soak (issue 15): 10k pods / 2k policies in a real API
## server churned for SOAK_DURATION (default 10m) while real packets probe a
## lab every second; 0 false allows, RSS and set sizes sampled. Not in make test.
SOAK_DURATION ?= 10m
soak: deps tools
	SOAK_DURATION=$(SOAK_DURATION) ./hack/soak.sh

## fuzz: every fuzz target for FUZZTIME each (seed corpora live in testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin e2e-report
