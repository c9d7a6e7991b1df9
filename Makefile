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
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

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
