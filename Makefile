# Two commands do all set-up: `make run` and `make test`. Both create .venv/ on
# first use and reuse it while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU build of torch, installed before anything can pull in a CUDA one.
# Where PyPI's torch would be a CUDA build, point pip at a CPU wheel index:
#   make run TORCH_PIP_ARGS="--index-url <PyTorch CPU wheel index>"
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=

.PHONY: run index test lint clean

run: $(STAMP)
	$(BIN)/python app.py

index: $(STAMP)
	$(BIN)/qa index

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks app.py
	$(BIN)/ruff format --check src tests benchmarks app.py
	$(BIN)/mypy

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import sys, torch; sys.exit('a CUDA build of torch was installed; see TORCH_PIP_ARGS in the Makefile' if torch.version.cuda else 0)"
	touch $(STAMP)

clean:
	rm -rf $(VENV) index/manifest.json index/*.jsonl index/*.faiss index/*.sqlite
