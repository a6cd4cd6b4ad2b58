# capsjax: `make install train` trains the paper's CapsNet on MNIST; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= experiments/configs/mnist.py
WORKDIR ?= runs/$(basename $(notdir $(CONFIG)))
DATA_DIR ?= $(if $(wildcard ../shared/data),../shared/data,)
DATA_FLAG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)
ARGS ?=
PY_SOURCES := src tests experiments examples docs/conf.py docs/_ext

.PHONY: install install-dev install-bench install-tfds train smoke eval bench test lint format docs check

$(PY):
	python3 -m venv $(VENV)

# capsjax with the tests' and linters' tools and the docs site's (Sphinx and its extensions).
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,docs]"

# What CI installs (the same as install).
install-dev: install

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

# The docs site in docs/_build/html: guides, the API reference, and the examples/ gallery, whose
# scripts run during the build (they read MNIST from DATA_DIR when set). Any Sphinx warning is an error.
docs:
	$(if $(DATA_DIR),CAPSJAX_DATA_DIR=$(abspath $(DATA_DIR)),) $(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Everything CI checks.
check: lint docs test
