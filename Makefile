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
# Fuzz targets as package:Target:executions; `make test` runs each that many times (about
# ten seconds here), `make fuzz` FUZZSCALE times more. Counts, not durations: Go 1.26's fuzz
# coordinator can fail a duration-bounded run with "context deadline exceeded" at the
# deadline (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZ      := ./internal/profile:FuzzParse:40 ./internal/policy:FuzzMountPolicy:1500 ./internal/policy:FuzzHardLinks:1200 \
             ./internal/guard:FuzzExpectation:200000 ./internal/evidence:FuzzEnvelopeParsing:6000 ./internal/image:FuzzCatalog:80000 \
             ./internal/egress:FuzzDecide:30000 ./internal/textsafe:FuzzString:20000
FUZZSCALE ?= 1
CROSS     := darwin/arm64 darwin/amd64 windows/amd64 linux/arm64

.PHONY: all build helper test test-unit cosign fuzz fuzz-short validate fmt-check vet examples cross bench install clean

all: build

# The helper that runs first in every container (cmd/sourceos-helper), the collector that
# brings a copy's work back (cmd/sourceos-collect), the egress gateway as a sidecar for
# machines, remote services and workspaces (cmd/sourceos-gateway) and a workspace's SFTP
# server (cmd/sourceos-sftp), built static for each Linux
# architecture and embedded into sourceosctl: every target that compiles sourceosctl needs
# them first.
HELPER_SRC  := $(wildcard cmd/sourceos-helper/*.go internal/guard/*.go internal/forward/*.go)
COLLECT_SRC := $(wildcard cmd/sourceos-collect/*.go internal/collect/*.go)
GATEWAY_SRC := $(wildcard cmd/sourceos-gateway/*.go internal/egress/*.go)
SFTP_SRC    := $(wildcard cmd/sourceos-sftp/*.go)
HELPERS     := $(foreach p,sourceos-helper sourceos-collect sourceos-gateway sourceos-sftp,$(foreach a,amd64 arm64,internal/helper/bin/$(p)-linux-$(a)))

helper: $(HELPERS)

internal/helper/bin/sourceos-helper-linux-%: $(HELPER_SRC)
	GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/sourceos-helper
	sha256sum $@ | cut -d' ' -f1 > $@.sha256

internal/helper/bin/sourceos-collect-linux-%: $(COLLECT_SRC)
	GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/sourceos-collect
	sha256sum $@ | cut -d' ' -f1 > $@.sha256

internal/helper/bin/sourceos-gateway-linux-%: $(GATEWAY_SRC)
	GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/sourceos-gateway
	sha256sum $@ | cut -d' ' -f1 > $@.sha256

internal/helper/bin/sourceos-sftp-linux-%: $(SFTP_SRC)
	GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/sourceos-sftp
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
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$$(( $${rest##*:} * $(FUZZSCALE) )); \
		echo "fuzz $$pkg $$name, $$n inputs"; \
		$(GOTEST) -run '^$$' -fuzz "^$$name$$" -fuzztime $${n}x $$pkg || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZSCALE=30

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
