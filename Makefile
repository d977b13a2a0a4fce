# regvault. `make test` is what CI runs (.ci/run).

GO ?= go

# Where the distribution registry binary is built and kept between runs.
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/regvault

DIST_VERSION := v3.1.2
DIST_MODULE  := github.com/distribution/distribution/v3
DIST_BIN     := $(CACHE)/bin/registry
DIST_STAMP   := $(CACHE)/bin/.registry-$(DIST_VERSION).stamp

# Fuzzing: packages to fuzz and how long each fuzz test runs.
# FUZZMINIMIZETIME bounds the minimizing of each new interesting input; 0
# leaves it out, so that a short run explores instead of shrinking the
# (multi-kilobyte) archive inputs of ./source/ byte by byte.
FUZZ_PKGS ?= ./plan/ ./source/
FUZZTIME  ?= 60s
FUZZMINIMIZETIME ?= 0

.PHONY: all build test demo bench fuzz lint distribution

all: build

build:
	$(GO) build -o bin/regvault ./cmd/regvault

# The CNCF distribution registry that integration tests run as a process.
# Built once per version (a few minutes on a fresh module cache); an
# existing binary of the right version is reused.
distribution: $(DIST_STAMP)
	@test -x "$(DIST_BIN)" || { rm -f "$(DIST_STAMP)"; $(MAKE) --no-print-directory "$(DIST_STAMP)"; }

$(DIST_STAMP):
	@mkdir -p "$(CACHE)/bin"
	@if [ -x "$(DIST_BIN)" ] && $(GO) version -m "$(DIST_BIN)" 2>/dev/null | \
		grep -Eq '^[[:space:]]+mod[[:space:]]+$(DIST_MODULE)[[:space:]]+$(DIST_VERSION)([[:space:]]|$$)'; then \
		echo "using $(DIST_BIN) ($(DIST_VERSION))"; \
	else \
		echo "building the distribution registry $(DIST_VERSION) into $(CACHE)/bin (takes a few minutes the first time)"; \
		env GOFLAGS= GOBIN="$(CACHE)/bin" $(GO) install $(DIST_MODULE)/cmd/registry@$(DIST_VERSION); \
	fi
	@rm -f "$(CACHE)"/bin/.registry-*.stamp
	@touch "$@"

# The race detector needs cgo and a C compiler; without them the tests run
# without it (and say so).
RACE := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

test: distribution
	@[ -n "$(RACE)" ] || echo "no C compiler for cgo: testing without the race detector"
	REGVAULT_DISTRIBUTION="$(DIST_BIN)" $(GO) test $(RACE) -count=1 -timeout 15m ./...

demo: build
	$(GO) run ./cmd/regvault-demo -regvault bin/regvault

# Benchmarks against oras, crane, skopeo and a plain-HTTP baseline; writes
# docs/benchmarks.md. BENCHFLAGS picks a subset, e.g. BENCHFLAGS='-w D1 -p wan'
# or BENCHFLAGS=-quick (see go run ./bench/cmd/bench -h).
BENCHFLAGS ?=
bench: distribution
	REGVAULT_DISTRIBUTION="$(DIST_BIN)" $(GO) run ./bench/cmd/bench $(BENCHFLAGS)

# Runs every Fuzz* test of each package in FUZZ_PKGS for FUZZTIME.
fuzz:
	@for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) $$pkg || exit 1; \
		done; \
	done

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
