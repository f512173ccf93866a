# Quarry. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/quarryfleet/quarry/pkg/version.Version=$(VERSION)
export PATH := $(BIN):$(PATH)
export CGO_ENABLED ?= 1
# go-nvml's header marks functions deprecated that the bindings still wrap.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# The agent needs cgo to load NVIDIA's driver library at run time; the
# controller and quarryctl are built without it, as static binaries.
# grpcnotrace drops golang.org/x/net/trace (and html/template with it):
# smaller binaries and a smaller resident agent.
TAGS ?= grpcnotrace

STATICCHECK_VERSION ?= v0.8.2
STRIPE_MOCK_VERSION ?= v0.203.0
SERF_VERSION ?= v0.11.0

.PHONY: help build run test testrace lint vet staticcheck tools proto check bench soak clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build quarry-agent, quarry-controller, quarryctl and quarry-sim into bin/
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./agent/cmd/quarry-agent
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./controller/cmd/quarry-controller ./controller/cmd/quarryctl ./controller/cmd/quarry-sim

run: build ## start a controller and an agent on this machine (Ctrl-C stops both)
	@scripts/run-local.sh

tools: ## install the tools the tests need (Go tools into bin/, Debian packages when root)
	@scripts/install-test-tools.sh

vet: ## go vet
	$(GO) vet ./...

staticcheck: tools ## staticcheck
	$(BIN)/staticcheck ./...

lint: vet staticcheck ## vet and staticcheck

test: tools vet staticcheck ## install test tools, vet, staticcheck, and run every test with -race
	$(GO) test -race -count=1 -timeout 15m ./...

testrace: test ## alias of test

proto: ## regenerate protobuf and gRPC code with buf
	cd proto && $(GO) tool -modfile=../tools/go.mod buf generate

check: proto ## fail if regenerating code leaves a diff
	@git diff --exit-code -- proto || (echo "generated code is stale: run 'make proto' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- proto)" || (git status --porcelain -- proto; echo "make proto created untracked files" && exit 1)

bench: build ## run benchmarks (quarry-sim ingest at 1k and 10k rigs over mTLS, profiles in bench-out/; the controller with 100k rigs in its store; package benchmarks)
	scripts/bench.sh

soak: build ## longer load and failure runs
	QUARRY_SOAK=1 $(GO) test -count=1 -timeout 60m -run Soak ./...

clean: ## remove build outputs
	rm -rf $(BIN)/quarry-agent $(BIN)/quarry-controller $(BIN)/quarryctl $(BIN)/quarry-sim
