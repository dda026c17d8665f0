"""Hybrid recall over 10,000 and 100,000 memories of one campaign: p50 and p99 in ms.

Figures per size:
- `search`: what recall does past the embedder, for a turn's queries (two actions and the narration
  tail): score the campaign's vectors with numpy, look up the queries' distinctive words in FTS5
  (word counts + BM25), fuse, keep duplicates out, fetch the winners from SQLite;
- `turn_recall`: a whole turn's recall (embed the queries with the bundled MiniLM + the search +
  pinned facts), each measured right after the previous turn committed its own entries, so it
  includes keeping the in-memory index in step (in place: no rebuild);
- `commit`: committing a turn with its three embedded entries (SQLite + FTS5 triggers + the index);
- `index_build`: reading a campaign's vectors into memory once, after a restart;
- `vector` and `sqlite_vec`: the vector part alone on the same vectors (what the store holds for the
  campaign, as the engine's index reads them), for the same three query vectors of each turn: the
  engine's in-memory index (the three queries scored on every int8 row, the best max(64, 2(4k+8)) of
  those again on float32, as `search` takes them; `vector_float32` every row on float32, and
  `int8_top5_agree` how much of its top 5 the int8 path finds)
  against three exact top-k KNN queries of sqlite-vec's `vec0` table (k = 4k+8, cosine, an in-memory
  database: its fastest case; `sqlite_vec_build_ms` is filling it). It needs `pysqlite3-binary` and
  `sqlite-vec` (requirements-bench.txt): the stdlib sqlite3 here cannot load extensions; without them
  `sqlite_vec_error` says why and the rest is measured all the same.
Vectors are real MiniLM embeddings of varied sentences, repeated with small noise to reach the size;
one entry in 500 names a ship no other entry names, and half of the questions ask about one.
Usage: python bench/retrieval.py [--sizes 10000 100000] [--queries 200] [--turns 60] [--no-sqlite-vec]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import numpy as np
from common import bench_logging, emit, log, percentile

from engine.memory.embeddings import Embedder
from engine.memory.bank import MemoryBank
from engine.store.memories import PINNED_KEY
from engine.memory.recall import Query
from engine.records import Action, NewMemory
from engine.store.campaigns import Store
from engine.memory.vector_index import VectorIndex
from engine.jobs.worker import ModelWorker

SUBJECTS = ["Bram", "Ilsa", "the innkeeper Marla", "the smith Tolda", "a hooded stranger", "the guard captain"]
VERBS = ["owes", "hides", "promised", "stole", "found", "sold", "lost", "guards"]
OBJECTS = ["30 gold coins", "the cellar key", "a silver dagger", "the map of Varn", "a letter sealed in red",
           "the sword Dawnbreaker", "a vial of nightshade", "the password blue heron"]
RARE_EVERY = 500
TOP_K = 5
WANTED = TOP_K * 4 + 8  # how many the engine's search takes by meaning before fusing (engine/memory/bank.py)
CANDIDATES = max(64, WANTED * 2)  # the rows its index scores again on float32 (engine/memory/bank.py)
EMBEDDER_ID = "all-MiniLM-L6-v2"


def open_sqlite_vec():
    """(an in-memory connection with sqlite-vec loaded, its version) or (None, why not)."""
    try:
        import pysqlite3.dbapi2 as sqlite
        import sqlite_vec
    except ImportError as exc:
        return None, f"not installed ({exc}); pip install -r requirements-bench.txt"
    try:
        conn = sqlite.connect(":memory:")
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        (version,) = conn.execute("SELECT vec_version()").fetchone()
        return conn, f"sqlite-vec {version} on SQLite {sqlite.sqlite_version}"
    except Exception as exc:  # noqa: BLE001 - any reason it cannot load goes into the figures
        return None, f"cannot load the extension: {type(exc).__name__}: {exc}"


def compare_sqlite_vec(conn, size: int, ids: list[int], matrix: np.ndarray, keys: list[int],
                       vectors: list[np.ndarray], weights: np.ndarray) -> dict:
    """The engine's index against sqlite-vec's vec0 on the same vectors and query vectors."""
    index = VectorIndex(ids, matrix, keys)
    engine = []
    for vector in vectors:
        start = time.perf_counter()
        top, _ = index.best(vector * weights, PINNED_KEY, CANDIDATES)
        engine.append((time.perf_counter() - start) * 1000)
        assert len(top) == CANDIDATES
    plain, agree32, checked32 = [], 0, 0  # the same search on float32 alone (every row exact), and agreement
    for vector in vectors:
        start = time.perf_counter()
        found32, _ = index.best(vector * weights, PINNED_KEY, CANDIDATES, exact=True)
        plain.append((time.perf_counter() - start) * 1000)
        found, _ = index.best(vector * weights, PINNED_KEY, CANDIDATES)
        agree32 += len(set(found32[:TOP_K]) & set(found[:TOP_K]))
        checked32 += TOP_K
    figures = {f"vector_p50_ms_{size}": round(percentile(engine, 50), 2),
               f"vector_p99_ms_{size}": round(percentile(engine, 99), 2),
               f"vector_float32_p50_ms_{size}": round(percentile(plain, 50), 2),
               f"vector_float32_p99_ms_{size}": round(percentile(plain, 99), 2),
               f"int8_top{TOP_K}_agree_{size}": round(agree32 / checked32, 3)}
    if conn is None:
        return figures
    table = f"vec_{size}"
    start = time.perf_counter()
    conn.execute(f"CREATE VIRTUAL TABLE {table} USING vec0(embedding float[{matrix.shape[1]}] distance_metric=cosine)")
    with conn:
        conn.executemany(f"INSERT INTO {table}(rowid, embedding) VALUES (?, ?)",
                         ((int(i), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for i, v in zip(ids, matrix)))
    figures[f"sqlite_vec_build_ms_{size}"] = round((time.perf_counter() - start) * 1000, 1)
    knn = f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ?"
    timings, agree, checked = [], 0, 0
    for vector in vectors:
        blobs = [np.ascontiguousarray(q, dtype=np.float32).tobytes() for q in vector]
        start = time.perf_counter()
        results = [conn.execute(knn, (blob, WANTED)).fetchall() for blob in blobs]
        timings.append((time.perf_counter() - start) * 1000)
        assert all(len(r) == WANTED for r in results)
        for q, rows in zip(vector, results):  # an exact search: its top k should be numpy's
            exact = set(np.asarray(ids)[np.argsort(-(matrix @ q))[:TOP_K]].tolist())
            agree += len(exact & {r[0] for r in rows[:TOP_K]})
            checked += TOP_K
    conn.execute(f"DROP TABLE {table}")
    figures[f"sqlite_vec_p50_ms_{size}"] = round(percentile(timings, 50), 2)
    figures[f"sqlite_vec_p99_ms_{size}"] = round(percentile(timings, 99), 2)
    figures[f"sqlite_vec_top{TOP_K}_agree_{size}"] = round(agree / checked, 3)
    return figures


def ship(k: int) -> str:
    return f"Zephyrine{k}"


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
        entries = [NewMemory("exact", f"{texts[p]} (entry {start + i})", v, "all-MiniLM-L6-v2")
                   if (start + i) % RARE_EVERY else
                   NewMemory("exact", f"{texts[p]} They sail on the {ship(start + i)}.", v, "all-MiniLM-L6-v2")
                   for i, (p, v) in enumerate(zip(picks, vectors))]
        await store.commit_turn(campaign_id, [], "bench narration", entries)


def turn_queries(rng, size: int, k: int) -> list[Query]:
    about = f"the {ship(RARE_EVERY * int(rng.integers(size // RARE_EVERY)))}" if k % 2 else rng.choice(OBJECTS)
    return [Query(f"What does {rng.choice(SUBJECTS)} know about {about}?"),
            Query(f"I ask {rng.choice(SUBJECTS)} where {rng.choice(OBJECTS)} is."),
            Query("The rain keeps falling on the roofs of Varn while the guild counts its coins.", 0.7, True)]


async def main(sizes: list[int], queries: int, turns: int, sqlite_vec: bool = True) -> dict:
    conn, said = open_sqlite_vec() if sqlite_vec else (None, "skipped (--no-sqlite-vec)")
    embedder = ModelWorker("embedder", lambda: Embedder.load("bundled:minilm"))
    try:
        await embedder.start()
        return await measure(embedder, conn, said, sizes, queries, turns)
    finally:  # also when a step fails: the embedder's thread must not keep the process alive
        await embedder.stop()
        if conn is not None:
            conn.close()


async def measure(embedder, conn, said: str, sizes: list[int], queries: int, turns: int) -> dict:
    rng = np.random.default_rng(7)
    texts = sentences(2000, rng)
    base = await embedder.call(lambda e: e.encode(texts))
    figures: dict = {"queries": queries, "turns": turns, "top_k": TOP_K, "vector_k": WANTED}
    figures["sqlite_vec" if conn is not None else "sqlite_vec_error"] = said
    log.info("sqlite-vec: %s", said)
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(f"{folder}/dm.sqlite3")
        bank = MemoryBank(store, embedder, "all-MiniLM-L6-v2")
        for size in sizes:
            campaign = await store.create_campaign(size, f"bench-{size}")
            await fill(store, campaign.id, base, texts, size, rng)
            start = time.perf_counter()
            await bank.recall(campaign.id, "warm up", top_k=TOP_K, min_score=0.0)  # reads the index once
            figures[f"index_build_ms_{size}"] = round((time.perf_counter() - start) * 1000, 1)
            asked = [turn_queries(rng, size, k) for k in range(queries)]
            vectors = [await embedder.call(lambda e, q=q: e.encode([x.text for x in q])) for q in asked]
            search, found_ship = [], 0
            for k, (query, vector) in enumerate(zip(asked, vectors)):
                start = time.perf_counter()
                probe = await bank.probe(campaign.id, query, vector)
                found = await bank.search(campaign.id, probe, top_k=TOP_K, min_score=0.0, recent_from_turn=None)
                search.append((time.perf_counter() - start) * 1000)
                assert len(found) == TOP_K
                name = query[0].text.split("the ")[-1].rstrip("?")
                found_ship += k % 2 == 1 and any(name in r.memory.text for r in found)
            weights = np.array([[q.weight] for q in asked[0]], dtype=np.float32)
            figures.update(compare_sqlite_vec(conn, size, *await store.memory_vectors(campaign.id, EMBEDDER_ID),
                                              vectors, weights))
            log.info("%d memories: vectors alone p50 %.2f ms; sqlite-vec p50 %s ms", size,
                     figures[f"vector_p50_ms_{size}"], figures.get(f"sqlite_vec_p50_ms_{size}", "-"))
            commit, turn_recall = [], []
            for k in range(turns):  # a turn commits its entries, then the next turn recalls
                said = [f"I ask about {rng.choice(OBJECTS)} at turn {k}.", f"The DM answers in turn {k}."]
                actions = [Action(0, campaign.id, 1, "Bram", said[0], 0.0, None)]
                entries = await bank.turn_entries(actions, said[1])
                start = time.perf_counter()
                await store.commit_turn(campaign.id, [], said[1], entries)
                commit.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                await bank.recall(campaign.id, turn_queries(rng, size, k), top_k=TOP_K, min_score=0.0)
                turn_recall.append((time.perf_counter() - start) * 1000)
            for name, values in (("search", search), ("turn_recall", turn_recall), ("commit", commit)):
                figures[f"{name}_p50_ms_{size}"] = round(percentile(values, 50), 2)
                figures[f"{name}_p99_ms_{size}"] = round(percentile(values, 99), 2)
            figures[f"ship_found_{size}"] = f"{found_ship}/{queries // 2}"
            log.info("%d memories: search p50 %.2f ms, turn recall p50 %.2f ms, ships found %s", size,
                     figures[f"search_p50_ms_{size}"], figures[f"turn_recall_p50_ms_{size}"],
                     figures[f"ship_found_{size}"])
        await store.close()
    figures["goal_vector_p50_ms_100000"] = 3
    figures["goal_search_p50_ms_100000"] = 10
    figures["goal_turn_recall_p50_ms_100000"] = 25
    return figures


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--no-sqlite-vec", action="store_true", help="leave out the sqlite-vec comparison")
    args = parser.parse_args()
    emit(asyncio.run(main(args.sizes, args.queries, args.turns, not args.no_sqlite_vec)))
