# Two promises: `make demo` (set up + run the main job on the embedded default) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
DEPS := pyproject.toml $(CONSTRAINTS)

.PHONY: demo test lint system-deps unit integration bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel

$(VENV)/.installed: $(BIN)/python $(DEPS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[all]'
	touch $@

$(VENV)/.installed-dev: $(BIN)/python $(DEPS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/recstack demo $(DEMO_ARGS)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

system-deps:
	@bash scripts/system-deps.sh

test: system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install-dev
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install-dev
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/stream.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
