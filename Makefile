PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install test test-all lint bench demo clean

# torch/torchvision are pinned to the releases this project is tested with (CUDA build; runs on CPU)
install: $(BIN)/dse
$(BIN)/dse: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test,export]'
	touch $@

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m "not gpu"

lint: install
	$(BIN)/ruff check dse tests bench

bench: install
	$(BIN)/python bench/sample_speed.py
	$(BIN)/python bench/analysis_speed.py
	$(BIN)/python bench/train_throughput.py

# The README's main job: AnyNetX_A vs AnyNetX_E on Fashion-MNIST (experiments/demo.yaml;
# DEMO_ARGS="--set n=16" and the like pass options to `dse run`)
demo: install
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || true
	$(BIN)/dse run experiments/demo.yaml $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
