# Two commands set everything up on a fresh machine (Python 3.11+ on the PATH as python3):
#   make test   - a virtualenv in .venv with ftlog and its dev tools; ruff, mypy, pytest
#   make demo   - the same set-up, then `ftlog demo`: simulated API -> SQLite -> reports
#
# The set-up uses uv (https://docs.astral.sh/uv/), which installs everything in seconds: the
# uv on the PATH, else one that pip installs into the new virtualenv. Where uv cannot be had
# or fails, pip does the whole install (a minute or two). UV=none forces pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
UV ?= $(shell command -v uv 2>/dev/null)

.PHONY: test lint demo bench bench-quick clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "ftlog needs Python 3.11 or newer; $(PYTHON) is older" >&2; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv --without-pip $(VENV)
	@uv="$(UV)"; \
	if [ -z "$$uv" ] && $(PYTHON) -m pip --version >/dev/null 2>&1; then \
		echo "$(PYTHON) -m pip --python $(BIN)/python install uv"; \
		$(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check uv \
			&& uv=$(BIN)/uv; \
	fi; \
	if [ -n "$$uv" ] && [ "$$uv" != none ] && echo "$$uv pip install pip -e '.[dev]'" \
		&& "$$uv" pip install --quiet --python $(BIN)/python pip -e '.[dev]'; then :; \
	else \
		echo "$(BIN)/python -m pip install -e '.[dev]'"; \
		$(BIN)/python -m ensurepip --default-pip >/dev/null \
			&& $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
			|| exit 1; \
	fi
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
	@uv="$(UV)"; [ -z "$$uv" ] && [ -x $(BIN)/uv ] && uv=$(BIN)/uv; \
	if [ -n "$$uv" ] && [ "$$uv" != none ]; then \
		"$$uv" pip install --quiet --python $(BIN)/python -e '.[bench]'; \
	else \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'; \
	fi
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
