"""Recall top-k over 10,000 and 100,000 memories of one campaign: p50 and p99 in ms.

Two figures per size: `search` (score the campaign's cached vectors with numpy, fetch the winners
from SQLite) and `recall` (the same plus embedding the query with the bundled MiniLM and reading the
pinned facts), which is what a turn pays. Vectors are real MiniLM embeddings of varied sentences,
repeated with small noise to reach the size.
Usage: python bench/retrieval.py [--sizes 10000 100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import numpy as np
from common import emit, log, percentile

from engine.embeddings import Embedder
from engine.memory import MemoryBank
from engine.records import NewMemory
from engine.store import Store
from engine.worker import ModelWorker

SUBJECTS = ["Bram", "Ilsa", "the innkeeper Marla", "the smith Tolda", "a hooded stranger", "the guard captain"]
VERBS = ["owes", "hides", "promised", "stole", "found", "sold", "lost", "guards"]
OBJECTS = ["30 gold coins", "the cellar key", "a silver dagger", "the map of Varn", "a letter sealed in red",
           "the sword Dawnbreaker", "a vial of nightshade", "the password blue heron"]


def sentences(n: int, rng: np.random.Generator) -> list[str]:
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} near place {rng.integers(1000)}."
            for _ in range(n)]


async def fill(store: Store, campaign_id: int, base: np.ndarray, texts: list[str], size: int, rng) -> None:
    batch = 10_000
    for start in range(0, size, batch):
        count = min(batch, size - start)
        picks = rng.integers(len(base), size=count)
        vectors = base[picks] + rng.normal(0, 0.02, size=(count, base.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        entries = [NewMemory("exact", texts[p], v, "all-MiniLM-L6-v2") for p, v in zip(picks, vectors)]
        await store.commit_turn(campaign_id, [], "bench narration", entries)


async def main(sizes: list[int], queries: int) -> dict:
    rng = np.random.default_rng(7)
    embedder = ModelWorker("embedder", lambda: Embedder.load("bundled:minilm"))
    await embedder.start()
    texts = sentences(2000, rng)
    base = await embedder.call(lambda e: e.encode(texts))
    questions = [f"what does {rng.choice(SUBJECTS)} know about {rng.choice(OBJECTS)}?" for _ in range(queries)]
    figures: dict = {"queries": queries, "top_k": 3}
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(f"{folder}/dm.sqlite3")
        bank = MemoryBank(store, embedder, "all-MiniLM-L6-v2")
        for size in sizes:
            campaign = await store.create_campaign(size, f"bench-{size}")
            await fill(store, campaign.id, base, texts, size, rng)
            start = time.perf_counter()
            await bank.recall(campaign.id, "warm up", top_k=3, min_score=0.0)  # builds the index once
            figures[f"index_build_ms_{size}"] = round((time.perf_counter() - start) * 1000, 1)
            vectors = await embedder.call(lambda e: e.encode(questions))
            search, recall = [], []
            for question, vector in zip(questions, vectors):
                start = time.perf_counter()
                found = await bank.search(campaign.id, vector, 3, 0.0, None)
                search.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                await bank.recall(campaign.id, question, top_k=3, min_score=0.0)
                recall.append((time.perf_counter() - start) * 1000)
                assert len(found) == 3
            for name, values in (("search", search), ("recall", recall)):
                figures[f"{name}_p50_ms_{size}"] = round(percentile(values, 50), 2)
                figures[f"{name}_p99_ms_{size}"] = round(percentile(values, 99), 2)
            log.info("%d memories: search p50 %.2f ms, recall p50 %.2f ms", size,
                     figures[f"search_p50_ms_{size}"], figures[f"recall_p50_ms_{size}"])
        await store.close()
    await embedder.stop()
    figures["goal_p50_ms_100000"] = 10
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    emit(asyncio.run(main(args.sizes, args.queries)))
