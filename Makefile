# Vigil — build, run and test. Every target installs what it needs itself.
GO        ?= go
BIN       := bin/vigil
PKGS      := ./...
# Core packages run under the race detector (it needs cgo and a C compiler).
RACE_PKGS := ./identity/... ./consensus/... ./node/... ./gossip/...
FUZZTIME  ?= 3s
DEVDIR    ?= .vigil-dev
# VERSION is what `vigil version` prints: the commit (and -dirty with local changes).
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: bench-detect-seq
.PHONY: example-python image test-docker generate all build run test test-unit fmt-check vet lint fuzz fuzz-short bench bench-deps clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/vigil

# run: a local mesh on embedded defaults.
run: build
	./$(BIN) dev --dir $(DEVDIR)

# test: formatting, vet, the race detector on the core packages, every other package, short fuzzing.
test: fmt-check vet test-unit fuzz-short

test-unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 15m $$($(GO) list $(PKGS) | grep -v -e /identity -e /consensus -e /node -e /gossip)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

lint: fmt-check vet

# fuzz-short runs every Fuzz target briefly (part of make test); fuzz runs them for longer.
fuzz-short:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

fuzz:
	FUZZTIME=60s ./scripts/fuzz.sh

bench-deps:
	./scripts/install-etcd.sh

# bench: Vigil and its baselines side by side in one run; see docs/benchmarks.md.
bench: bench-deps
	$(GO) test -run '^$$' -bench . -benchtime 2000x -timeout 60m ./consensus/... | tee bench.out
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./identity/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'SignalConvergence|IdleBytes' -benchtime 30x -timeout 30m ./gossip/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'AgentMessaging|RevokeEnforced$$|RevokeCutsOffSDKAgent|AnomalyToCutOff' -benchtime 40x -timeout 30m ./node/ | tee -a bench.out

# bench-detect: every detection figure on real data (needs ../shared/data) and the detector's
# throughput and memory, each beside its baseline; see docs/benchmarks.md and docs/detection.md.
.PHONY: bench-detect
bench-detect: bench-detect-nab bench-detect-seq bench-detect-engine

# bench-detect-engine: the multivariate models and the per-agent engine (records/s, bytes per agent).
.PHONY: bench-detect-engine
bench-detect-engine:
	$(GO) test -run '^$$' -bench . -benchtime 20000x -timeout 30m ./detector/multivar/
	$(GO) test -run '^$$' -bench EngineRecords -benchtime 300000x ./detector/engine/
	$(GO) test -run '^$$' -bench Engine10kAgents -benchtime 1x -timeout 30m ./detector/engine/

# bench-detect-seq: the sequence models (n-gram, LSTM, cover) on HDFS and ADFA-LD with full training,
# the trace-level scorers and combinations on ADFA-LD, and the models' scoring throughput beside a
# bigram-lookup baseline; see docs/benchmarks.md.
bench-detect-seq:
	VIGIL_BENCH_SEQ=1 $(GO) test -count=1 -v -run 'TestHDFSBench|TestADFABench|TestADFATraceBench|TestModelMemory' -timeout 60m ./detector/seqbench/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 200000x ./detector/sequence/

# image builds vigil:dev FROM scratch around the static binary (nothing is pulled).
image:
	./deploy/build-image.sh vigil:dev

# test-docker: the container end-to-end test alone (make test runs it too; it skips without Docker).
test-docker:
	$(GO) test -count=1 -run TestDockerCluster -v ./cmd/vigil

# generate rebuilds the admin API's protobuf code (committed, so make test needs no protoc).
generate:
	./scripts/gen-proto.sh

clean:
	rm -rf bin $(DEVDIR) bench.out

# example-python: the Python example agent under `vigil monitor`, against a running `make run`:
# it runs as example-agent (registered by dev, never connected by it) and messages demo-agent-2.
PY_AGENT      ?= example-agent
PY_PEER       ?= demo-agent-2
PY_CAPABILITY ?= chat
example-python: build
	@test -f $(DEVDIR)/vigil.env || { echo "no $(DEVDIR)/vigil.env: start the mesh first with make run (in another shell)"; exit 1; }
	. "$(abspath $(DEVDIR))/vigil.env" && ./$(BIN) monitor --key "$$VIGIL_DEV_DIR/agents/$(PY_AGENT).key" --node "$${VIGIL_NODES%%,*}" \
		--listen "unix:$$VIGIL_DEV_DIR/$(PY_AGENT)-monitor.sock" \
		-- python3 examples/python/agent.py --peer $(PY_PEER) --capability $(PY_CAPABILITY)
# bench-detect-nab: the metric models over the NAB corpus (needs ../shared/data/nab) beside NAB's
# published scoreboard, then points/s and bytes per model beside a summing baseline. See
# docs/detection-nab.md.
.PHONY: bench-detect-nab
bench-detect-nab:
	$(GO) run ./detector/nab/cmd/nabbench -model ewma,gaussian,gaussian-nab,cad,vigil,cad-live,cad-live-margin -mem
	$(GO) test -run '^$$' -bench . -benchtime 2000000x ./detector/metric/
