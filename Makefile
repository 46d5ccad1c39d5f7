# seqft developer commands. `make quickstart` and `make test` install what they need first.
PYTHON ?= python3
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test style quality bench

# torch 2.13.0: CI's pip finds the CPU wheel on disk. On a fresh Linux machine plain PyPI serves the CUDA build;
# `make quickstart TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU build from PyTorch's index.
TORCH_INDEX ?=

build/.installed: pyproject.toml
	$(PYTHON) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PYTHON) -m pip install -q -e ".[dev,quickstart]"
	@mkdir -p build && touch $@

install: build/.installed

quickstart: install
	$(PYTHON) -m seqft.train recipes/quickstart.json

test: install
	$(PYTHON) -m pytest -q tests

style:
	ruff format seqft tests benchmarks
	ruff check --fix seqft tests benchmarks

quality:
	ruff format --check seqft tests benchmarks
	ruff check seqft tests benchmarks
	$(PYTHON) -m json.tool --no-ensure-ascii recipes/quickstart.json > /dev/null

bench: install
	$(PYTHON) benchmarks/bench_train.py
