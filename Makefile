# Two entry points on a fresh machine: `make run` (the triad cube) and `make test`.
# Both install the exact versions of requirements/*.lock (hashes checked), then rlharness itself;
# `make lock` re-resolves the locks from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# e.g. PIP_INDEX="--extra-index-url URL" where pip cannot find the torch CPU build by itself
PIP_INDEX ?=
PIP := $(BIN)/python -m pip install --quiet --require-hashes --no-deps $(PIP_INDEX)
# The locks' resolver: uv, in a tools venv of its own (not part of the locked environment).
LOCK_TOOLS ?= .lock-tools
UV_VERSION := 0.13.9
# Python 3.11 on Linux x86-64 (manylinux_2_28: glibc 2.28 or newer), the torch CPU build; the
# resolver looks where pip looks here (pip's find-links, which hold torch 2.13.0+cpu) as well.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
LOCK_SOURCES = $(addprefix --find-links ,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_COMPILE = $(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --quiet --generate-hashes \
	$(LOCK_TARGET) $(LOCK_SOURCES)

.PHONY: install install-test run test lint bench lock

$(BIN)/rlharness: requirements/run.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/run.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The test tools (pytest, ruff, mypy, jupyter, playwright, psycopg), and the venv's Python as
# the Jupyter kernel `rlharness` (an absolute path, so that `jupytext --execute` finds it).
$(VENV)/.test-tools: $(BIN)/rlharness requirements/test.lock
	$(PIP) -r requirements/test.lock
	$(BIN)/python -m ipykernel install --sys-prefix --name rlharness \
		--display-name "Python 3 (rlharness)" >/dev/null
	touch $@

install: $(BIN)/rlharness

install-test: $(VENV)/.test-tools

run: install
	$(BIN)/rlharness run experiments/triad_cube_baird.yaml

test: install-test
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy rlharness benchmarks

bench: install
	$(BIN)/python benchmarks/bench_linear_td.py

$(LOCK_TOOLS)/bin/uv:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# run.lock: what `make run` needs (the dependencies and the minatar extra); test.lock: the same
# versions plus the dev extra.
lock: $(LOCK_TOOLS)/bin/uv
	mkdir -p requirements
	$(UV_COMPILE) --extra minatar -o requirements/run.lock
	$(UV_COMPILE) --extra minatar --extra dev -c requirements/run.lock -o requirements/test.lock
