# Two commands set everything up on a fresh machine (Python 3.11+ on the PATH as python3):
#   make test   - a virtualenv in .venv with ftlog and its dev tools; ruff, mypy, pytest
#   make demo   - the same set-up, then `ftlog demo`: simulated API -> SQLite -> reports
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint demo bench bench-quick clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

demo: $(INSTALLED)
	$(BIN)/ftlog demo

# The benchmarks also need the peer they compare ftlog with (dlt: the bench extra).
$(VENV)/.bench-installed: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
