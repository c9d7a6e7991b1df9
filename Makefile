# Quick start:
#   make run    install into .venv and run every seed scenario in the simulator
#   make test   install into .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tcpstack scenario all

lint: $(STAMP)
	$(BIN)/ruff check src tests fuzz
	$(BIN)/ruff format --check src tests fuzz

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n 2 -q

test: lint typecheck pytest

# Debian packages for the tests that use real parts (TUN interop, tshark, graphviz,
# headless Chromium); needs root. Without them those tests skip and say why.
system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache

# Benchmarks (speed only; see src/tcpstack/benchmarks): tables on stdout, every figure
# also in out/bench.json. Options: make bench BENCH_ARGS="--only bulk --bulk-bytes 100M".
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m tcpstack.benchmarks --json out/bench.json $(BENCH_ARGS)

# Goodput over a lossy 100 Mbit/s path (virtual time; takes minutes, so not in `bench`).
# Options: make bench-lossy BENCH_ARGS="--lossy-bytes 10M --lossy-loss 0 2".
.PHONY: bench-lossy
bench-lossy: $(STAMP)
	$(BIN)/python -m tcpstack.benchmarks --only lossy --json out/bench-lossy.json $(BENCH_ARGS)

# Sampling profiles of one 20 MB bulk transfer (wire path, MSS 1460): py-spy's flame
# graph (out/profile/*.svg) and table of shares, then pyinstrument's HTML call tree.
# Options: make profile PROFILE_ARGS="--bulk-bytes 50M --profile-top 40".
PROFILE_ARGS ?=
.PHONY: profile
profile: $(STAMP)
	$(BIN)/python -m tcpstack.benchmarks --only profile --profiler py-spy $(PROFILE_ARGS)
	$(BIN)/python -m tcpstack.benchmarks --only profile --profiler pyinstrument $(PROFILE_ARGS)

# Coverage-guided fuzzing with atheris (libFuzzer): the codec and the Endpoint in each of
# the eleven states (fuzz/). FUZZ_RUNS inputs per harness; the corpora grow in out/fuzz/
# and a failing input is saved as crash-<sha1> in the current directory. Options:
# make fuzz FUZZ_RUNS=1000000 FUZZ_ARGS="-max_len=2048".
FUZZ_RUNS ?= 100000
FUZZ_ARGS ?=
FUZZ_STAMP := $(VENV)/.installed-fuzz
.PHONY: fuzz
$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	mkdir -p out/fuzz/codec out/fuzz/endpoint
	$(BIN)/python fuzz/fuzz_codec.py -runs=$(FUZZ_RUNS) $(FUZZ_ARGS) out/fuzz/codec
	$(BIN)/python fuzz/fuzz_endpoint.py -runs=$(FUZZ_RUNS) $(FUZZ_ARGS) out/fuzz/endpoint
