# Two entry points on a fresh machine: `make run` (the triad cube) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench

$(BIN)/rlharness: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,minatar]"
	touch $@

install: $(BIN)/rlharness

run: install
	$(BIN)/rlharness run experiments/triad_cube_baird.yaml

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy rlharness benchmarks

bench: install
	$(BIN)/python benchmarks/bench_linear_td.py
