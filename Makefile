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
FUZZ_PKGS ?= ./archive/ ./plan/ ./planfile/ ./source/
FUZZTIME  ?= 60s
FUZZMINIMIZETIME ?= 0

.PHONY: all build image test demo bench fuzz lint distribution peers conformance

# Peer tools that the interop tests (cmd/regvault/interop_test.go) run
# against regvault's archives: installed once per version into
# $(CACHE)/bin with go install, reused when present.
# ORAS_VERSION is bench/tools.go's OrasVersion too (a bench test checks).
ORAS_VERSION   := v1.3.6
ORAS_MODULE    := oras.land/oras
ORAS_BIN       := $(CACHE)/bin/oras
REGCTL_VERSION := v0.11.7
REGCTL_MODULE  := github.com/regclient/regclient
REGCTL_BIN     := $(CACHE)/bin/regctl
# crane is a client of `regvault serve` in the tests (the binary only: its
# library would pull docker/cli into go.mod). CRANE_VERSION is
# bench/tools.go's CraneVersion too (a bench test checks).
CRANE_VERSION  := v0.22.1
CRANE_MODULE   := github.com/google/go-containerregistry
CRANE_BIN      := $(CACHE)/bin/crane

# The OCI distribution-spec conformance suite, run read-only against
# `regvault serve` (cmd/regvault/serve_conformance_test.go). The module has
# no release tags: this pseudo-version is its main branch of 2026-08-31,
# whose read-only mode (OCI_API_PUSH=false, OCI_RO_DATA_*) runs
# the pull, tag-list and referrers checks on given content. It prints its
# result tree, then panics writing its report files after a read-only run
# (it records a result for push data it never created): the test reads the
# printed tree, not the exit code, and the copy is not patched.
CONFORMANCE_VERSION := v0.0.0-20260831232431-97274622c111
CONFORMANCE_MODULE  := github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_BIN     := $(CACHE)/bin/conformance

all: build

# What `regvault version` prints; a build outside a git checkout says
# "devel" and leaves the commit to the Go build information.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# Commit and tree state only from a checkout git can read: elsewhere git
# status fails too, which is no evidence of a clean tree.
IN_GIT     := $(shell git rev-parse --verify -q HEAD >/dev/null 2>&1 && echo yes)
COMMIT     ?= $(if $(IN_GIT),$(shell git rev-parse HEAD))
TREE_STATE ?= $(if $(IN_GIT),$(shell [ -z "$$(git status --porcelain)" ] && echo clean || echo dirty))
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.treeState=$(TREE_STATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/regvault ./cmd/regvault

# The container image (README "Container image"): static binaries
# (CGO_ENABLED=0, -trimpath) for each platform, then cmd/regvault-image
# puts them from scratch into one OCI layout (IMAGE_DIR, and IMAGE_TAR),
# tagged with VERSION. No container daemon. Every time stamp is
# SOURCE_DATE_EPOCH (default: the commit's time), so two builds of one
# commit give the same bytes.
IMAGE_PLATFORMS   ?= linux/amd64 linux/arm64
IMAGE_DIR         ?= bin/image
IMAGE_TAR         ?= bin/regvault-image.tar
IMAGE_SOURCE      ?= https://github.com/regvault/regvault
SOURCE_DATE_EPOCH ?= $(if $(IN_GIT),$(shell git log -1 --format=%ct),0)
IMAGE_BUILD       := bin/image-build

image:
	@rm -rf "$(IMAGE_BUILD)"
	@set -e; for p in $(IMAGE_PLATFORMS); do \
		os=$${p%%/*}; arch=$${p#*/}; \
		echo "building $$p"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o "$(IMAGE_BUILD)/$${os}_$${arch}/regvault" ./cmd/regvault; \
	done
	$(GO) run ./cmd/regvault-image -o "$(IMAGE_DIR)" -tar "$(IMAGE_TAR)" -version "$(VERSION)" \
		-revision "$(COMMIT)" -source "$(IMAGE_SOURCE)" -epoch "$(SOURCE_DATE_EPOCH)" \
		$(foreach p,$(IMAGE_PLATFORMS),$(p)=$(IMAGE_BUILD)/$(subst /,_,$(p))/regvault)

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

# peers installs oras, regctl and crane at their pinned versions (a binary of
# another version is replaced; one of the right version is reused).
peers:
	@$(call go_install_tool,$(ORAS_BIN),$(ORAS_MODULE),$(ORAS_MODULE)/cmd/oras,$(ORAS_VERSION))
	@$(call go_install_tool,$(REGCTL_BIN),$(REGCTL_MODULE),$(REGCTL_MODULE)/cmd/regctl,$(REGCTL_VERSION))
	@$(call go_install_tool,$(CRANE_BIN),$(CRANE_MODULE),$(CRANE_MODULE)/cmd/crane,$(CRANE_VERSION))

# conformance installs the conformance suite at its pinned version.
conformance:
	@$(call go_install_tool,$(CONFORMANCE_BIN),$(CONFORMANCE_MODULE),$(CONFORMANCE_MODULE),$(CONFORMANCE_VERSION))

# go_install_tool BIN,MODULE,PACKAGE,VERSION: go install PACKAGE@VERSION
# into $(CACHE)/bin unless BIN is already a build of MODULE at VERSION.
define go_install_tool
mkdir -p "$(CACHE)/bin"; \
if [ -x "$(1)" ] && $(GO) version -m "$(1)" 2>/dev/null | \
	grep -Eq '^[[:space:]]+mod[[:space:]]+$(2)[[:space:]]+$(4)([[:space:]]|$$)'; then \
	echo "using $(1) ($(4))"; \
else \
	echo "installing $(3)@$(4) into $(CACHE)/bin"; \
	cd "$${TMPDIR:-/tmp}" && env GOFLAGS= GOWORK=off GOBIN="$(CACHE)/bin" $(GO) install $(3)@$(4); \
fi
endef

# The race detector needs cgo and a C compiler; without them the tests run
# without it (and say so).
RACE := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

test: distribution peers conformance
	@[ -n "$(RACE)" ] || echo "no C compiler for cgo: testing without the race detector"
	REGVAULT_DISTRIBUTION="$(DIST_BIN)" REGVAULT_ORAS="$(ORAS_BIN)" REGVAULT_REGCTL="$(REGCTL_BIN)" REGVAULT_CRANE="$(CRANE_BIN)" REGVAULT_CONFORMANCE="$(CONFORMANCE_BIN)" $(GO) test $(RACE) -count=1 -timeout 15m ./...

demo: build
	$(GO) run ./cmd/regvault-demo -regvault bin/regvault

# Benchmarks against oras, crane, skopeo, regsync and a plain-HTTP baseline; writes
# docs/benchmarks.md. BENCHFLAGS picks a subset, e.g. BENCHFLAGS='-w D1 -p wan'
# or BENCHFLAGS=-quick (see go run ./bench/cmd/bench -h). BENCHFLAGS='-ops serve'
# measures regvault serve against the distribution registry (the Serve
# section at the end of docs/benchmarks.md).
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
