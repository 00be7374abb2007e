# policyd — see README.md. All targets run from a clean checkout.
GO        ?= go
BIN       := bin/policyd
PKGS      := ./...
# Kernel tests create network namespaces: they need root (CI runs as root).
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build test test-unit verify bench fuzz demo conformance clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/policyd

## test: every test, kernel tests included (root needed; CI=true turns skips into failures).
test: build
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-unit: tests that need neither root nor the kernel.
test-unit:
	$(GO) test -count=1 -short $(PKGS)

verify:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 $(PKGS)

## bench: benchmarks with their baselines, written to BENCHMARKS.md by hack/bench.sh.
bench: build
	./hack/bench.sh

## fuzz: run every fuzz target for FUZZTIME each (seeds live in testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
