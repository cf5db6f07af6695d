# The two commands of the quickstart: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv and install everything from a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install lint typecheck bench eval serve clean

# setup.py and the C source too: `make install` rebuilds policies._native when they change
$(STAMP): pyproject.toml setup.py policies/_native.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rollguard demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/overhead.py

serve: $(STAMP)
	$(VENV)/bin/rollguard serve

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
