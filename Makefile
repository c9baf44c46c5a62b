# Fustor — build, test, demo. Every target works on a fresh clone with Go installed; tools are
# installed from the Go module proxy into ./bin/tools on first use.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools
export PATH := $(TOOLS):$(PATH)
MODULES := gen sdk agent fusion tools

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION := v1.9.4
GRPC_GATEWAY_VERSION := v2.34.0

.PHONY: all build test test-short demo generate lint bench bench-e2e tools clean check-generated compose-demo compose-down test-docker

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./fusion/cmd/fustor-fusion ./agent/cmd/fustor-agent ./sdk/cmd/fustorctl ./tools/cmd/fustor-writer

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/protoc-gen-grpc-gateway:
	GOBIN=$(TOOLS) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
$(TOOLS)/protoc-gen-openapiv2:
	GOBIN=$(TOOLS) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
$(TOOLS)/grpcurl:
	GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

GEN_TOOLS := $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/protoc-gen-grpc-gateway $(TOOLS)/protoc-gen-openapiv2

tools: $(GEN_TOOLS) $(TOOLS)/grpcurl

# The JSON/HTTP gateway (gen/gateway) and its OpenAPI document (gen/openapi, embedded by
# gen/openapi/openapi.go, which is not generated) come from grpc-gateway's standalone HTTP
# rules in proto/http.yaml, the document's own settings from proto/openapi.yaml: no
# google/api/annotations.proto, which would need the Buf registry.
generate: $(GEN_TOOLS)
	rm -rf gen/fustor gen/gateway gen/openapi/*.json
	buf generate

check-generated: generate
	@git diff --exit-code -- gen/ || (echo "gen/ is stale: run make generate and commit it" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen/)" || (git status --porcelain -- gen/; echo "gen/ has untracked generated files" >&2; exit 1)

lint: $(TOOLS)/buf
	buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt'ed:" $$out >&2; exit 1; fi
	$(GO) vet $(addprefix ./,$(addsuffix /...,$(MODULES)))

# The test command of README.md: vet, then every module's tests with the race detector, the
# end-to-end tests with real binaries included, the fsnotify fallback watcher's tests, and a
# short run of each fuzz test. The fuzz runs are bounded by executions, not time: a duration
# -fuzztime can fail spuriously with "context deadline exceeded" when it expires mid-run
# (go.dev/issue/75804, fixed in Go 1.27); the counts are about 10 s here.
test: $(TOOLS)/grpcurl
	$(GO) vet $(addprefix ./,$(addsuffix /...,$(MODULES)))
	$(GO) test -race -count=1 -timeout 20m $(addprefix ./,$(addsuffix /...,$(MODULES)))
	# the portable fsnotify watcher, which other systems use, on this machine too
	$(GO) test -race -count=1 -tags fustor_fsnotify ./agent/internal/source/fs
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60000x ./sdk/fsbatch
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime 4000x ./fusion/internal/view/fs
	$(GO) test -run '^$$' -fuzz '^FuzzWatermarkIsMode$$' -fuzztime 250000x ./sdk/clock
	# the example systemd units (systemd-analyze verify where it is installed)
	bash deploy/systemd/check.sh
	@echo "note: the container fault tests are not part of make test; run make test-docker (it needs a Docker engine; .ci/run runs it when one answers)"

test-short:
	$(GO) test -short -count=1 $(addprefix ./,$(addsuffix /...,$(MODULES)))

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x ./sdk/... ./fusion/... ./agent/...

# The end-to-end benchmark: generates (or reuses) a 1,000,000-file tree in bench-data/, runs
# both daemons on it, measures them against find(1) and writes report.txt/.json/.html under
# bench-out/<timestamp>/. Flags go in ARGS, e.g. make bench-e2e ARGS='--files 100000'.
bench-e2e: build
	$(GO) run ./tools/cmd/fustor-bench --bin $(BIN) $(ARGS)

# Starts Fusion and an agent on demo-data/ (created with sample files if missing) with the
# built-in demo configuration; Ctrl-C stops both.
demo: build
	@./scripts/demo.sh

# The object-storage demo: fustor-s3d (an in-memory S3 server) with a seeded bucket (10,000
# objects, DEMO_S3_OBJECTS=N for another size), Fusion with the demo configuration and an
# agent whose s3 source lists the bucket; Ctrl-C stops all three.
.PHONY: demo-sql
demo-sql: build
	@./scripts/demo-sql.sh

.PHONY: demo-s3
demo-s3: build
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./tools/cmd/fustor-s3d
	@./scripts/demo-s3.sh

# The compose demo: whichever Compose the machine has (the docker compose plugin, else
# docker-compose); images are built FROM scratch around the static binaries, nothing is pulled.
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
COMPOSE_PROJECT ?= fustor-demo

compose-demo: build
	@test -n "$(COMPOSE)" || { echo "compose-demo: neither 'docker compose' nor docker-compose is installed" >&2; exit 1; }
	$(COMPOSE) -p $(COMPOSE_PROJECT) build
	$(COMPOSE) -p $(COMPOSE_PROJECT) up -d
	@echo
	@echo "Fusion listens on 127.0.0.1:$${FUSTOR_COMPOSE_PORT:-7070}; try:"
	@echo "  bin/fustorctl --key demo-key status"
	@echo "  bin/fustorctl --key demo-key --view all where 'data_0001.dat'"
	@echo "  bin/fustorctl --key demo-key --view all stats /upload --best file_count"
	@echo "  bin/fustorctl --key demo-key --view storage-1 blind-spots /"
	@echo "Stop and remove everything: make compose-down"

compose-down:
	@test -n "$(COMPOSE)" || { echo "compose-down: no Compose installed" >&2; exit 1; }
	$(COMPOSE) -p $(COMPOSE_PROJECT) down --volumes --rmi all --remove-orphans

# The container fault tests (fusion/e2e/docker_test.go): the compose demo's images and file, the
# storages bind-mounted so the test compares the views with them. Skipped, saying so, where no
# Docker engine answers.
test-docker: build
	@docker info >/dev/null 2>&1 || { echo "test-docker: no Docker engine answers (docker info failed)" >&2; exit 1; }
	@test -n "$(COMPOSE)" || { echo "test-docker: neither 'docker compose' nor docker-compose is installed" >&2; exit 1; }
	FUSTOR_COMPOSE="$(COMPOSE)" $(GO) test -tags docker -count=1 -timeout 20m -run '^TestDocker' ./fusion/e2e

clean:
	rm -rf $(BIN)
