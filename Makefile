# skiff — make targets. `make help` lists them.
SHELL        := bash
GO           ?= go
BIN          := bin/skiff
EXAMPLE_DIR  ?= $(or $(TMPDIR),/tmp)/skiff-example
SKIFF_CORPUS ?= $(HOME)/.cache/skiff/corpus
INFRA        ?= /tmp/skiff-infra
FUZZTIME     ?= 30s
export SKIFF_CORPUS INFRA

.PHONY: help build device example test integration corpus infra-up infra-down fuzz bench bench-deps clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

# The commit (and whether the work tree had changes) for `skiff version`,
# whatever GOFLAGS says about -buildvcs; empty outside a git checkout.
COMMIT       := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
LDFLAGS      := $(if $(filter-out +dirty,$(COMMIT)),-X github.com/skiff-dev/skiff/internal/buildinfo.Commit=$(COMMIT))

build: ## build bin/skiff
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skiff

device: ## the device binaries: pure Go, no database drivers (-tags skiff_device), for linux/arm64, arm/v7 and amd64 in bin/
	for t in arm64: arm:7 amd64:; do \
	  a=$${t%%:*} v=$${t#*:}; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a GOARM=$$v $(GO) build -tags skiff_device -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/skiff-linux-$$a$${v:+v$$v} ./cmd/skiff || exit 1; \
	done
	@ls -l bin/skiff-linux-*

example: build ## the main job on the built-in example pair: key, signed diff, apply with --trust, verify (no network needed)
	@rm -rf $(EXAMPLE_DIR)
	$(BIN) example $(EXAMPLE_DIR)
	$(BIN) key generate -o $(EXAMPLE_DIR)/example-key
	$(BIN) diff --from docker-archive:$(EXAMPLE_DIR)/old.tar --to docker-archive:$(EXAMPLE_DIR)/new.tar -o $(EXAMPLE_DIR)/update.skiff --sign $(EXAMPLE_DIR)/example-key.key
	$(BIN) inspect --trust $(EXAMPLE_DIR)/example-key.pub $(EXAMPLE_DIR)/update.skiff
	$(BIN) apply --base docker-archive:$(EXAMPLE_DIR)/old.tar --delta $(EXAMPLE_DIR)/update.skiff --output docker-archive:$(EXAMPLE_DIR)/rebuilt.tar --trust $(EXAMPLE_DIR)/example-key.pub
	$(BIN) inspect --verify docker-archive:$(EXAMPLE_DIR)/rebuilt.tar
	@want=$$($(BIN) inspect --format json docker-archive:$(EXAMPLE_DIR)/new.tar | grep -m1 config_digest); \
	 got=$$($(BIN) inspect --format json docker-archive:$(EXAMPLE_DIR)/rebuilt.tar | grep -m1 config_digest); \
	 [ "$$want" = "$$got" ] && echo "rebuilt image ID equals the target's: $$got" || { echo "image ID differs: $$got vs $$want"; exit 1; }

test: ## unit tests, vet and the fuzz seeds (fast, no network, no daemons)
	$(GO) vet ./...
	$(GO) test -count=1 ./...

corpus: ## build the realistic corpus (real software; ~10 min the first time, cached)
	bash testdata/corpus/make-corpus.sh
	$(GO) run ./bench/corpus/cmd/mkimages -root "$(SKIFF_CORPUS)"

infra-up: ## install and start Docker Engine 20.10 and 28.5.2, containerd 1.6 and 2.4.2, the registry and PostgreSQL on loopback (28.5.2 and 2.4.2 built once, ~12 min, cached in ~/.cache/skiff/tools)
	bash testdata/infra/start-infra.sh

infra-down: ## stop what infra-up started
	bash testdata/infra/stop-infra.sh

TESTLOG := grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic| )|exact|_test.go'

integration: corpus infra-up ## integration tests against real engines, the corpus and PostgreSQL (SKIFF_POSTGRES from env.sh; the fleet database and its 10,000-device load): Docker 20.10 + containerd 1.6 (Debian), then Docker 28.5.2 (containerd image store) + containerd 2.4.2
	@echo "== engines: Docker 20.10 (classic store), containerd 1.6 (Debian)"
	. $(INFRA)/env.sh && SKIFF_CORPUS_IMAGES="$(SKIFF_CORPUS)/images/app/new.tar" \
	  $(GO) test -count=1 -tags integration -timeout 40m -run Integration -v ./... 2>&1 | \
	  $(TESTLOG) ; exit $${PIPESTATUS[0]}
	@echo "== engines: Docker 28.5.2 (containerd image store), containerd 2.4.2 (ctr 2.4.2)"
	. $(INFRA)/env.sh && export DOCKER_HOST=$$DOCKER28_HOST CONTAINERD_ADDRESS=$$CONTAINERD2_ADDRESS SKIFF_CTR=$$CTR2 && \
	  SKIFF_CORPUS_IMAGES="$(SKIFF_CORPUS)/images/app/new.tar" \
	  $(GO) test -count=1 -tags integration -timeout 20m -run 'IntegrationDaemon|IntegrationManifestToEngine' -v ./layerfs/ ./delta/ 2>&1 | \
	  $(TESTLOG) ; exit $${PIPESTATUS[0]}
	. $(INFRA)/env.sh && export DOCKER_HOST=$$DOCKER28_HOST CONTAINERD_ADDRESS=$$CONTAINERD2_ADDRESS SKIFF_CTR=$$CTR2 && \
	  $(GO) test -count=1 -tags integration -timeout 30m -run Integration -v ./agent/ ./cmd/skiff/ 2>&1 | \
	  $(TESTLOG) ; exit $${PIPESTATUS[0]}

fuzz: ## run every fuzz target of the module for FUZZTIME each (default 30s; or e.g. 10000x) and print the executions
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash testdata/fuzz/run.sh

bench-deps: ## install the tools skiff bench compares with (zstd, bsdiff, xdelta3, rdiff, GNU time; tar-diff into ./bin)
	DEBIAN_FRONTEND=noninteractive apt-get install -y zstd bsdiff xdelta3 rdiff time
	GO=$(GO) bash bench/install-tar-diff.sh bin

bench: build ## Go benchmarks, then skiff bench on the corpus (needs `make corpus`, tools from `make bench-deps`; chart in docs/bench.svg)
	$(GO) test -run XXX -bench . -benchmem ./layerfs/ ./delta/bsdiff/
	@mkdir -p docs
	$(BIN) bench --corpus --chart docs/bench.svg

clean: ## remove build outputs
	rm -rf bin $(EXAMPLE_DIR)
