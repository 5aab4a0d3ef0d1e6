# The podman-remote build: the Podman bindings need these tags and no cgo (without
# containers_image_openpgp the build wants cgo gpgme). Every target below uses them.
GO        ?= go
TAGS      := remote exclude_graphdriver_btrfs containers_image_openpgp
export CGO_ENABLED := 0
PKG       := github.com/sourceos/sourceosctl
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(PKG)/internal/cli.version=$(VERSION) -X $(PKG)/internal/cli.commit=$(COMMIT)
GOBUILD   := $(GO) build -tags "$(TAGS)" -trimpath -ldflags "$(LDFLAGS)"
GOTEST    := $(GO) test -tags "$(TAGS)"
BIN       := bin/sourceosctl
# Fuzz targets as package:Target; `make test` runs each briefly, `make fuzz` longer.
FUZZ      := ./internal/profile:FuzzParse ./internal/policy:FuzzMountPolicy ./internal/policy:FuzzHardLinks ./internal/guard:FuzzExpectation ./internal/evidence:FuzzEnvelopeParsing ./internal/image:FuzzCatalog
FUZZTIME  ?= 10s
CROSS     := darwin/arm64 darwin/amd64 windows/amd64 linux/arm64

.PHONY: all build helper test test-unit cosign fuzz fuzz-short validate fmt-check vet examples cross bench install clean

all: build

# The helper that runs first in every container (cmd/sourceos-helper), built static for each
# Linux architecture and embedded into sourceosctl: every target that compiles sourceosctl
# needs it first.
HELPER_SRC := $(wildcard cmd/sourceos-helper/*.go internal/guard/*.go)
HELPERS    := internal/helper/bin/sourceos-helper-linux-amd64 internal/helper/bin/sourceos-helper-linux-arm64

helper: $(HELPERS)

internal/helper/bin/sourceos-helper-linux-%: $(HELPER_SRC)
	GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/sourceos-helper
	sha256sum $@ | cut -d' ' -f1 > $@.sha256

build: helper
	$(GOBUILD) -o $(BIN) ./cmd/sourceosctl

# All tests, integration included: they start their own throw-away Podman service, and
# verify evidence with stock cosign (built once from the Go module proxy, then cached).
test: cosign test-unit fuzz-short

test-unit: helper
	COSIGN=$(COSIGN) $(GOTEST) -count=1 -timeout 45m ./...

COSIGN_VERSION := v3.1.3
TOOLS_DIR      ?= $(HOME)/.cache/sourceosctl-tools
COSIGN         := $(TOOLS_DIR)/cosign

cosign: $(COSIGN)

$(COSIGN):
	@echo "building cosign $(COSIGN_VERSION) for the interoperability tests (a few minutes, once)"
	GOBIN=$(TOOLS_DIR) $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_VERSION)

fuzz-short: helper
	@for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GOTEST) -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

validate: fmt-check vet examples cross test

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: helper
	$(GO) vet -tags "$(TAGS)" ./...

examples: helper
	$(GOTEST) -count=1 -run 'TestExamples|TestDefaults' ./internal/profile

cross: helper
	@for p in $(CROSS); do \
		echo "build $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GOBUILD) -o /dev/null ./cmd/sourceosctl || exit 1; \
	done

bench: helper
	$(GOTEST) -run '^$$' -bench . -benchmem ./...

install: helper
	$(GO) install -tags "$(TAGS)" -trimpath -ldflags "$(LDFLAGS)" ./cmd/sourceosctl

clean:
	rm -rf bin $(HELPERS)
