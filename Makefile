# dr-syncer — see README.md. Everything a fresh machine needs is built here
# from the Go module proxy; outputs and caches live in .cache/ and bin/.

SHELL    := /bin/bash
GO       ?= go
CACHE    := $(CURDIR)/.cache
KUBE_BIN := $(CACHE)/kube-bin
CLUSTERS := $(CACHE)/clusters
BIN      := $(CURDIR)/bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Cold, the control-plane build alone takes several minutes on 2 cores.
TEST_TIMEOUT ?= 30m

export KUBEBUILDER_ASSETS := $(KUBE_BIN)

.PHONY: all build kube-bin host-tools test bench fuzz fmt-check vet clusters-up clusters-down demo clean

all: build

## build: the dr-syncer binary, into bin/ (static, without cgo, as deploy/controller/Dockerfile builds it)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/dr-syncer ./cmd/dr-syncer

## kube-bin: kube-apiserver, kubectl and etcd built from source into .cache/kube-bin (a no-op when current)
kube-bin:
	@hack/kube-bin/build.sh $(KUBE_BIN)

## host-tools: rsync and the OpenSSH client, which the PVC stage runs (from Debian when missing)
host-tools:
	@hack/host-tools.sh

## test: gofmt, go vet and every test, unit and real-apiserver
test: kube-bin host-tools fmt-check vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## bench: every benchmark on local control planes; a side-by-side report in .cache/bench (BENCH_ARGS: -n 1000,10000 -large -count 3 -only REGEXP -out DIR)
bench: kube-bin host-tools
	$(GO) run ./hack/bench $(BENCH_ARGS)

# The fuzz targets, as package:Target. `make test` runs their seed corpora
# (testdata/fuzz/<Target>/ and the f.Add seeds); `make fuzz` fuzzes each.
FUZZ_TARGETS := policies:FuzzDecode policies:FuzzClean gitstore:FuzzObjectPath gitstore:FuzzParseObjectPath pvcsync:FuzzParseProgress pvcsync:FuzzParseStats
FUZZTIME ?= 30s

## fuzz: run each fuzz target for FUZZTIME (default 30s), one after the other; new crashers land in <package>/testdata/fuzz/
fuzz: kube-bin
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz ./$$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	done

fmt-check:
	@files=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

## clusters-up: a source and a target control plane in the background; kubeconfigs in .cache/clusters
clusters-up: kube-bin
	@$(GO) run ./hack/clusters up --bin $(KUBE_BIN) --dir $(CLUSTERS)

## clusters-down: stop them (apiservers before etcd) and remove their state
clusters-down:
	@$(GO) run ./hack/clusters down --dir $(CLUSTERS)

## demo: the main job on two local control planes
demo: build kube-bin host-tools
	@hack/demo/run.sh

clean: clusters-down
	rm -rf $(BIN)
