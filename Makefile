# kecho / kechod — top-level build.
#
# Every target that needs Debian packages installs the missing ones first
# (test/deps.sh), so on a fresh Debian 12 machine `make demo` and `make test`
# are all the set-up there is.

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' | grep . || cat VERSION)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Kernel release to build the module for; default: the newest installed
# Debian kernel that has headers.
KVER ?= $(shell ls -1 /lib/modules 2>/dev/null | sort -V | while read r; do [ -d /lib/modules/$$r/build ] && echo $$r; done | tail -n1)
LDFLAGS := -X github.com/kecho-dev/kecho/internal/version.Version=$(VERSION) \
	-X github.com/kecho-dev/kecho/internal/version.Commit=$(COMMIT)
export KECHO_VERSION := $(VERSION)

.PHONY: help deps module kechod style check test test-unit test-vm demo clean packages demo-system fuzz test-debug matrix bench

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

deps: ## Install the Debian packages the build and tests need (root).
	@./test/deps.sh

module: deps ## Build kecho.ko for $(KVER) in dkms/.
	$(MAKE) -C dkms KVER=$(KVER)

kechod: ## Build bin/kechod.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kechod ./cmd/kechod

style: deps ## checkpatch.pl on the module sources.
	$(MAKE) -C dkms style

check: deps ## sparse on the module sources.
	$(MAKE) -C dkms check KVER=$(KVER)

test-unit: ## Go unit tests (no root, no VM: -short skips the VM tests).
	$(GO) test -race -count=1 -short ./...

test: deps ## Every test: unit, style, VM (real kernel in qemu), packages, booted system.
	$(MAKE) -C dkms style
	$(MAKE) -C dkms check KVER=$(KVER)
	KECHO_REQUIRE_VM=1 $(GO) test -race -count=1 -p 1 -timeout 80m ./...
	$(MAKE) fuzz

# Fuzz budgets are execution counts, not durations: with a duration, Go's
# fuzz coordinator (go1.26) can fail a target with a bare "context deadline
# exceeded" when a starved worker misses the end of the window, with no
# failing input behind it. A count has no deadline to race. Roughly 20 s each
# on a loaded two-core machine; override with e.g. FUZZ_LOAD=2000000x.
FUZZ_VERIFY ?= 500000x
FUZZ_LOAD ?= 200000x
fuzz: ## Run each fuzz target for a bounded number of executions (FUZZ_VERIFY, FUZZ_LOAD).
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZ_VERIFY) ./internal/health
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZ_LOAD) ./internal/config

test-debug: deps ## Build the debug kernel (KASAN, lockdep, kmemleak; cached, about an hour the first time) and run the whole VM suite plus the fault/soak suite on it.
	./test/debugkernel/build.sh
	KECHO_REQUIRE_VM=1 KECHO_REQUIRE_DEBUG_KERNEL=1 $(GO) test -count=1 -v -timeout 100m -run '^TestDebugKernel$$' ./test/fault

matrix: deps ## Build kecho on every kernel in test/matrix/kernels.txt, boot several; print the table (MATRIX_FLAGS=-only 7.3 -no-boot).
	$(GO) run ./test/matrix $(MATRIX_FLAGS)

demo: deps ## Boot a VM, load kecho, echo "hello world", show counters.
	$(GO) run ./test/demo

bench: deps ## Benchmark kecho against Go and C echo servers in one VM; table + chart (BENCH_FLAGS=-short, -variants all).
	$(GO) run ./test/bench $(BENCH_FLAGS)

packages: ## Build kecho-dkms and kechod .deb/.rpm (amd64, arm64) into dist/.
	$(GO) run ./packaging --out dist

demo-system: deps packages ## Boot Debian 12 with the packages installed; show kechod status and a ping.
	$(GO) run ./test/system/demo --dist dist

clean: ## Remove build outputs.
	-$(MAKE) -C dkms clean
	rm -rf bin dist
