# SkyPACS developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./var

.PHONY: install run test unit integration interop lint typecheck bench bench-compare bench-qido-scale clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/skypacs serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

test: install lint typecheck
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest -m unit

integration: install
	$(BIN)/python -m pytest -m integration

interop: install
	$(BIN)/python -m pytest -m interop tests/interop

lint: install
	$(BIN)/ruff check libs services tests bench
	$(BIN)/ruff format --check libs services tests bench

typecheck: install
	$(BIN)/mypy libs/skypacs services

bench: bench-compare bench-qido-scale

bench-compare: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-qido-scale: install
	$(BIN)/python -m bench.qido_scale --data-dir bench/scale-index $(QIDO_SCALE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
