# capsjax: `make install train` trains the paper's CapsNet on MNIST; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= experiments/configs/mnist.py
WORKDIR ?= runs/$(basename $(notdir $(CONFIG)))
DATA_DIR ?= $(if $(wildcard ../shared/data),../shared/data,)
DATA_FLAG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)
ARGS ?=
PY_SOURCES := src tests experiments docs/conf.py

.PHONY: install install-dev install-bench install-tfds train smoke eval bench test lint format docs check

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"

# What CI installs: the tests' and linters' tools and Sphinx for the API reference.
install-dev: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,docs]"

# The peers of `make bench` (TensorFlow with Keras 3, PyTorch; ~1 GB).
install-bench: install
	$(PY) -m pip install -q -e ".[dev,bench]"

# tensorflow-datasets with TensorFlow (~1.4 GB): only needed to download datasets online.
install-tfds: install
	$(PY) -m pip install -q -e ".[dev,tfds]"

train:
	$(PY) -m capsjax train --config $(CONFIG) --workdir $(WORKDIR) $(DATA_FLAG) $(ARGS)

smoke:
	$(MAKE) train CONFIG=experiments/configs/smoke.py

eval:
	$(PY) -m capsjax eval --workdir $(WORKDIR) $(DATA_FLAG)

bench:
	$(PY) -m capsjax bench --workdir runs/bench $(ARGS)

test:
	$(PY) -m pytest -q -n auto --maxprocesses=4 --durations=15 tests src/capsjax

lint:
	$(PY) -m ruff check $(PY_SOURCES)
	$(PY) -m ruff format --check $(PY_SOURCES)

# Rewrites files: ruff's import order and fixes, then its formatting.
format:
	$(PY) -m ruff check --fix $(PY_SOURCES)
	$(PY) -m ruff format $(PY_SOURCES)

# The API reference from the docstrings, in docs/_build/html; any Sphinx warning is an error.
docs:
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Everything CI checks.
check: lint docs test
