# The harness's entry points. Each target installs what it needs first:
#   make matrix   run the matrix (MATRIX=matrices/default.yaml) and print the tables
#                 (RESUME=results/<run> finishes an interrupted run instead;
#                 FAIL_ON=regression|change exits 3 on such a verdict, for CI)
#   make test     lint, unit tests, integration tests on a real Docker engine
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MATRIX ?= matrices/default.yaml

.PHONY: venv engine images matrix run test unit integration lint clean reproduce calibrate bench fuzz \
	verdict-stability

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.lock
	touch $@

# A Docker engine with Compose v2: left alone where `docker info` already works.
engine: venv
	VENV=$(VENV) bash scripts/engine.sh

images: engine
	$(PY) -m harness images

matrix: engine
	$(PY) -m harness $(foreach c,$(ALLOW_CONTEXTS),--allow-context $(c)) matrix $(if $(RESUME),--resume $(RESUME),$(MATRIX)) $(if $(FAIL_ON),--fail-on $(FAIL_ON))

run: engine
	$(PY) -m harness run --haproxy $(or $(HAPROXY),debian:bookworm) --scenario $(or $(SCENARIO),smoke)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

unit: venv
	$(PY) -m pytest -m "not integration" -q

integration: engine
	$(PY) -m pytest -m integration -v

test: lint engine
	$(PY) -m pytest -v --durations=15

# The hostile-matrix property over 10,000 generated matrices (make test runs 300).
fuzz: venv
	HARNESS_FUZZ_EXAMPLES=$(or $(EXAMPLES),10000) $(PY) -m pytest -q \
		tests/unit/test_hostile_spec.py -k generated_matrix

clean: venv
	$(PY) -m harness clean

# Two versions, one scenario, enough repetitions for a verdict on one screen:
#   make reproduce A=debian:bullseye B=debian:bookworm SCENARIO=chunked-stall
reproduce: engine
	@test -n "$(A)" -a -n "$(B)" -a -n "$(SCENARIO)" || { echo "usage: make reproduce A=<spec> B=<spec> SCENARIO=<name>" >&2; exit 2; }
	$(PY) -m harness reproduce --a $(A) --b $(B) --scenario $(SCENARIO) $(if $(REPETITIONS),--repetitions $(REPETITIONS)) $(if $(FAIL_ON),--fail-on $(FAIL_ON))

calibrate: engine
	$(PY) -m harness calibrate

# Performance targets of the harness's own parts: the backend, per-cell overhead, report time
# (scripts/bench.sh; REPORT_RUN=RUN_DIR times `harness report` on that run, e.g. the default).
bench: venv engine
	PY=$(PY) bash scripts/bench.sh

# How stable the headline verdict is: the chunked-stall part of the default matrix N times,
# HOG_RUNS="2 4" with a CPU hog on one core (not part of `make test`):
#   make verdict-stability N=5 HOG_RUNS="2 4"
verdict-stability: engine
	N=$(or $(N),5) HOG_RUNS="$(HOG_RUNS)" PY=$(PY) bash scripts/verdict-stability.sh
