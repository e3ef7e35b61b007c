# chatdr build, checks and tests. `make test` is what CI runs (.ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
BIN      ?= bin
LAB_DIR  ?= .lab
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/chatdr/chatdr/internal/buildinfo.version=$(VERSION)
# Packages whose tests start real processes or many goroutines run with -race
# like the rest; the test binaries build their own copies of the commands.
TESTFLAGS ?= -race -count=1 -timeout 30m

.PHONY: build
build: ## build chatdr, chatdr-agent and chatdr-controller into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: proto
proto: ## format the protos and regenerate the Go code beside them
	$(GO) tool buf format -w
	$(GO) tool buf generate

.PHONY: check-generated
check-generated: ## regenerate into a temp dir and fail if the committed code differs
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(GO) tool buf generate -o $$tmp; \
	fail=0; \
	while IFS= read -r f; do \
	  if ! cmp -s "$$tmp/$$f" "$$f"; then echo "stale generated file: $$f (run 'make proto')"; fail=1; fi; \
	done < <(cd $$tmp && find proto -name '*.go'); \
	for f in $$(find proto -name '*.pb.go'); do \
	  [ -f "$$tmp/$$f" ] || { echo "generated file without a proto: $$f"; fail=1; }; \
	done; \
	[ $$fail -eq 0 ] && echo "generated code is up to date"

.PHONY: lint
lint: ## gofmt, go vet, buf lint and buf format
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool buf lint
	$(GO) tool buf format --diff --exit-code > /dev/null || { echo "run 'make proto' (buf format)"; exit 1; }
	@echo "lint ok"

.PHONY: windows
windows: ## check that everything compiles for Windows
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	@echo "windows build ok"

# The lab's fault scenarios (issue 6): long (a fresh lab each, retries with
# real backoffs), so they run after the other tests, one package at a time.
CHAOS ?= ^TestFault_

.PHONY: test
test: lint check-generated windows ## all checks, then every test (race detector on): the packages, then the lab's fault scenarios
	{ $(GO) test $(TESTFLAGS) -skip '$(CHAOS)' -json ./... 2>&1; \
	  $(GO) test $(TESTFLAGS) -timeout 60m -run '$(CHAOS)' -json ./lab/ 2>&1; } | $(GO) run ./internal/cmd/testsummary

.PHONY: test-chaos
test-chaos: ## only the lab's fault scenarios (about 15 minutes; make test runs them too)
	$(GO) test $(TESTFLAGS) -timeout 60m -run '$(CHAOS)' -json ./lab/ 2>&1 | $(GO) run ./internal/cmd/testsummary

.PHONY: bench
bench: ## benchmarks; figures are recorded in docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchtime 50x -benchmem ./controller/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./sim/mssql/
	$(GO) test -run '^$$' -bench . -benchtime 5x ./plugins/mssql/
	$(GO) test -run '^$$' -bench . -benchtime 500x ./e2e/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./lab/

.PHONY: demo
demo: ## build, start the two-site lab, planned failover and failback with chat traffic; fails if a message is lost
	LAB_DIR=$(LAB_DIR) BIN=$(BIN) MAKE="$(MAKE)" GO=$(GO) scripts/demo.sh

.PHONY: demo-down
demo-down: ## stop the lab started by make demo and remove it
	@if [ -f $(LAB_DIR)/lab.json ]; then $(BIN)/chatdr lab down --dir $(LAB_DIR) --purge; else echo "no lab in $(LAB_DIR)"; fi
	rm -f $(LAB_DIR).env

.PHONY: clean
clean:
	rm -rf $(BIN)

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Time per fuzz target, and per minimization of an interesting input.
FUZZTIME         ?= 30s
FUZZMINIMIZETIME ?= 5s

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 30s) each, one after another (docs/testing.md)
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) scripts/fuzz.sh
