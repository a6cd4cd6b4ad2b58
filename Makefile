# capsjax: `make install train` trains the paper's CapsNet on MNIST; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= experiments/configs/mnist.py
WORKDIR ?= runs/$(basename $(notdir $(CONFIG)))
DATA_DIR ?= $(if $(wildcard ../shared/data),../shared/data,)
DATA_FLAG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)
ARGS ?=

.PHONY: install install-dev install-tfds train smoke eval bench test lint experiments

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"

install-dev: install

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
	$(PY) -m capsjax bench --workdir runs/bench $(DATA_FLAG) $(ARGS)

test:
	$(PY) -m pytest -q tests src/capsjax

lint:
	$(PY) -m ruff check src tests experiments
