"""Shared fixtures: the bundled models load once per test session; every test gets its own SQLite file.

Helpers live in this folder's modules (tinymodels.py); import them by module name, never as
`tests.x`: yandexfreetranslate installs a top-level package called `tests` that would shadow ours.
"""
from __future__ import annotations

import os
import random
import sys
import zlib
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub downloads, ever, in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Converting the bundled GGUF takes ~20 s: keep the converted copy between test runs.
MODEL_CACHE = os.environ.get("DM_TEST_MODEL_CACHE", str(ROOT / ".cache" / "models"))


@pytest.fixture(autouse=True)
def same_draws_each_run(request):
    """Every test draws from its own fixed seed (llama.cpp's samplers and the dice seed from `random`):
    a sampled reply that trips a test trips it on every run, not on one CI run in twenty."""
    import torch

    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope="session")
def text_backend():
    from engine.textgen.transformers_backend import TransformersBackend

    return TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=MODEL_CACHE)


@pytest.fixture(scope="session")
def embedder():
    from engine.memory.embeddings import Embedder

    return Embedder.load("bundled:minilm")


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "dm.sqlite3")


@pytest.fixture
async def store(db_path):
    """A real store in this test's SQLite file."""
    from engine.store.campaigns import Store

    opened = await Store.open(db_path)
    yield opened
    await opened.close()


@pytest.fixture
async def bank(store, embedder):
    """Memory over that store, with the session's embedder in its own worker thread."""
    from engine.memory.bank import MemoryBank
    from engine.jobs.worker import ModelWorker

    worker = ModelWorker("embedder", lambda: embedder)
    await worker.start()
    yield MemoryBank(store, worker, embedder.id, chunk_chars=200)
    await worker.stop()


@pytest.fixture
def make_config(tmp_path):
    """A real Config for the bundled models, a temp database and the shared model cache."""
    from bot.config import parse_config

    def make(**sections) -> "object":
        data = {"storage": {"path": str(tmp_path / "dm.sqlite3")}, "llm": {"cache_dir": MODEL_CACHE}}
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return parse_config(data, "test-config")

    return make


@pytest.fixture
async def services(make_config, text_backend, embedder, request):
    """The real services from bot.services over the session's models; settings via @pytest.mark.config."""
    from bot.services import build_services

    marker = request.node.get_closest_marker("config")
    sections = {"llm": {"generation": {"max_new_tokens": 8}}, "runner": {"batch_wait_ms": 5}}
    for name, values in (marker.kwargs if marker else {}).items():
        if name == "llm" and "generation" in values:
            sections["llm"]["generation"].update(values["generation"])
            values = {k: v for k, v in values.items() if k != "generation"}
        sections.setdefault(name, {}).update(values)
    built = await build_services(make_config(**sections), text_model=text_backend, embed_model=embedder)
    yield built
    await built.close()
