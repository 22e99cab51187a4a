# The README's two first commands: `make run` and `make test`. Both create .venv through
# scripts/setup.sh when it is missing, so they work on a fresh clone.
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run quick test lint setup clean-runs

$(VENV)/.qarm-setup-stamp: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(VENV)/.qarm-setup-stamp

run: setup
	$(PY) -m benchmark run $(ARGS)

quick: setup
	$(PY) -m benchmark run --quick $(ARGS)

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(ARGS)

lint: setup
	$(VENV)/bin/ruff check qarm recsys_models benchmark tests

clean-runs:
	rm -rf runs
