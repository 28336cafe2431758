# Two commands do all set-up: `make run` and `make test`. Both create .venv/ on
# first use and reuse it while pyproject.toml is unchanged. ARGS goes to the
# command: make run ARGS="--port 8000"; make test ARGS="-k filters"; make index ARGS="--rebuild".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU build of torch, installed before anything can pull in a CUDA one.
# Where PyPI's torch would be a CUDA build, point pip at a CPU wheel index:
#   make run TORCH_PIP_ARGS="--index-url <PyTorch CPU wheel index>"
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
ARGS ?=
# pip without its progress bars and notices; the steps say what is happening instead.
PIP := $(BIN)/python -m pip --disable-pip-version-check install --quiet --progress-bar off

.PHONY: run index test lint clean

run: $(STAMP)
	$(BIN)/python app.py $(ARGS)

index: $(STAMP)
	$(BIN)/qa index $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks training app.py
	$(BIN)/ruff format --check src tests benchmarks training app.py
	$(BIN)/mypy

# The first run takes a few minutes (about 1 GB of packages); each step says what it does.
# The BM25 kernels are C, compiled when qa is installed: a change to them installs again.
$(STAMP): pyproject.toml src/qa/index/bm25_kernels.c
	@echo "qa: setting up $(VENV)/ (first run, or pyproject.toml changed; a few minutes) ..."
	@test -x $(BIN)/python || { echo "qa: creating the virtual environment $(VENV)/ ..." && $(PYTHON) -m venv $(VENV); }
	@echo "qa: installing torch $(TORCH_VERSION) (CPU build, the largest download) ..."
	@$(PIP) "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	@echo "qa: installing qa and its dependencies (sentence-transformers, faiss-cpu, bm25s, gradio, openai, test tools) ..."
	@$(PIP) -e ".[dev,llm]"
	@echo "qa: checking that torch is the CPU build ..."
	@$(BIN)/python -c "import sys, torch; sys.exit('a CUDA build of torch was installed; see TORCH_PIP_ARGS in the Makefile' if torch.version.cuda else 0)"
	@touch $(STAMP)
	@echo "qa: set-up done."

clean:
	rm -rf $(VENV) index/manifest.json index/corpus-stamps.json index/qa-index.lock index/embeddings.sqlite \
		index/documents-* index/passages-* index/vectors-* index/slots-* index/bm25-* index/sentences-*
