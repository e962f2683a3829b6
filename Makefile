# agentd — build, test and benchmark.
# `make setup` installs everything a fresh machine needs; `make test` runs the
# whole test suite (what CI runs).

GO       ?= go
BIN      ?= bin
NPM      ?= npm
BRIDGES  := bridge-telegram bridge-discord bridge-whatsapp
GOFLAGS  ?=
export GOFLAGS

.PHONY: all setup setup-go setup-apt setup-npm build test test-short bench bench-setup fuzz lint proto clean

all: build

## setup: Debian packages (voice engines, protoc), Go modules, npm packages (iroh sidecar, test peers)
setup: setup-apt setup-go setup-npm

# Debian packages the tests use: the voice engines (espeak-ng, pocketsphinx
# + its English model, ffmpeg), chromium for the web app tests (driven by
# chromedp; never a downloaded browser). protoc is only needed by `make proto`.
APT_PACKAGES ?= espeak-ng pocketsphinx pocketsphinx-en-us ffmpeg chromium protobuf-compiler

setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "install these Debian packages first: sudo apt-get install$$missing"; exit 1; fi; \
	fi
	@command -v node >/dev/null 2>&1 || { echo "Node.js >= 20 is needed (iroh sidecar, test peers): install it, e.g. apt-get install nodejs"; exit 1; }

setup-go:
	$(GO) mod download

setup-npm:
	cd sidecar/iroh && $(NPM) install --omit=dev --no-audit --no-fund
	@if [ -f testpeers/package.json ]; then cd testpeers && $(NPM) install --no-audit --no-fund; fi

## build: every binary into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## test: the whole suite (unit, integration with real binaries and peers, brief fuzzing)
test: build lint
	$(GO) test -count=1 -timeout 30m ./...
	./scripts/fuzz-brief.sh

test-short:
	$(GO) test -short -count=1 ./...

## bench: benchmarks that print ratios against baselines measured in the same run
## (one package at a time: packages benchmarked side by side measure each other)
bench: bench-setup
	$(GO) test -p 1 -run='^$$' -bench=. -benchtime=2s -timeout 30m ./...

## bench-setup: what the benchmarks' baselines need (aiohttp, for BenchmarkConcurrentClients)
bench-setup:
	@$(MAKE) --no-print-directory setup-apt APT_PACKAGES=python3-aiohttp

## fuzz: longer fuzzing of the parsers (FUZZTIME=1000000x for a million execs)
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-brief.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

## proto: regenerate gRPC code from proto/ (generated code is committed)
proto:
	$(GO) generate ./proto/...

clean:
	rm -rf $(BIN)
