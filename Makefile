# soundalike: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= demo

.PHONY: demo test browser lint typecheck bench bench-quick bench-load bench-scale bench-scale-quick stress clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[web,dask,mongo,eval,scale,dev]'
	touch $(STAMP)

## demo: synthesise a small library, ingest it, and print recommendations
demo: $(STAMP)
	$(PY) -m soundalike.demo --out $(DEMO)

## test: lint, type-check and run the whole test suite (installs Debian's chromium if missing)
test: $(STAMP) browser lint typecheck
	$(PY) -m pytest

## browser: the browser tests' chromium (installed when missing and root; otherwise the command to run)
browser:
	@bash tools/ensure-chromium.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick

## bench-load: 8 clients, 400 mixed requests on a 2,000-track library; writes benchmarks/results/load.md
bench-load: $(STAMP)
	$(PY) -m benchmarks --only load

## bench-scale: 10k / 100k / 1M synthetic 3-minute tracks built and served, ScaNN and faiss side by side at 10k-1M (about two hours); writes benchmarks/results/scale.md
bench-scale: $(STAMP)
	nice -n 10 $(PY) -m benchmarks.scale

## bench-scale-quick: the same at 10k / 100k (minutes); writes benchmarks/results/scale-quick.md
bench-scale-quick: $(STAMP)
	nice -n 10 $(PY) -m benchmarks.scale --quick

## stress: the long fault-injection and load tests (minutes)
stress: $(STAMP)
	$(PY) -m pytest -m stress -p no:cacheprovider -o addopts="--import-mode=importlib -ra"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache test-artifacts
