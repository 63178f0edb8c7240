# Set-up and everyday jobs. `make demo` and `make test` work on a fresh machine with
# Python 3.11 and access to PyPI: they create .venv, install torch==2.13.0 FIRST (the CPU
# build; an unpinned torch would pull the multi-GB CUDA build), then the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.recagent-installed
USER_ID ?= 1

.PHONY: demo test test-all bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

## The main job on the embedded default: recommendations with evidence for a demo-shop user.
demo: $(STAMP)
	$(BIN)/recagent recommend --user $(USER_ID)

## The default test run (fast; real-data tests run when ../shared/data is there).
test: $(STAMP)
	$(BIN)/python -m pytest

## Everything, including slow tests.
test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not vllm and not gpu"

bench: $(STAMP)
	$(BIN)/python -m recagent.evals.bench_spine

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
