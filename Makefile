# make demo | test | test-slow | bench | lint — each makes .venv first when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: install demo test test-slow test-measure test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## train linear_ae on the embedded digits, then write its report
	$(BIN)/python train.py --model linear_ae
	$(BIN)/python evaluate.py --run last

test: $(STAMP)  ## the fast suite, on up to 4 cores (fails when no test ran)
	$(PYTEST) -q -n auto --maxprocesses 4

test-slow: $(STAMP)  ## DDP, SLURM and end-to-end tests
	$(PYTEST) -q -m "slow and not measurement" --durations=30

test-measure: $(STAMP)  ## trainings and measurements that check a published target on this machine
	$(PYTEST) -q -m measurement

test-all: test test-slow

bench: $(STAMP)  ## speed measurements, written to BENCHMARKS.md
	$(BIN)/python -m benchmarks.run --out BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf runs reports lightning_logs .pytest_cache
