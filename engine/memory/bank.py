"""Long-term memory: exact entries and summaries, embedded, recalled by meaning and by words.

Entries are written here (a turn's exact pieces, summaries, pinned facts); recall is hybrid
(engine/memory/recall.py): one query per thing the players do now, cosine over the campaign's vectors
fused with BM25 over its rarer words. Vectors are scored from an in-memory index per campaign that
follows every change of the store in place (engine/memory/vector_index.py).
"""
from __future__ import annotations

import asyncio

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from engine.memory.embeddings import Embedder
from engine.store import PINNED_KEY, turn_key
from engine.memory.recall import (NEAR_DUPLICATE, OWN_BONUS, Query, Recalled, content_words, distinctive_words, owners,
                           rare_limit, rare_words, relative_scores, word_bonus, word_slots)
from engine.records import Action, Memory, NewMemory
from engine.text import chunk_text
from engine.store import Store
from engine.memory.vector_index import VectorIndex
from engine.jobs import ModelWorker

log = logging.getLogger(__name__)
WORD_HITS = 64  # BM25 candidates per query: rare words match few entries, some of them in the window


@dataclass
class Probe:
    """A turn's queries, embedded and tokenised once; searched again when the window changes."""
    queries: list[Query]
    vectors: np.ndarray
    word_hits: list[list[tuple[int, float]]] = field(default_factory=list)  # per query: (id, bm25)
    words: list[list[str]] = field(default_factory=list)


class MemoryBank:
    """A campaign's long-term memory: writes its entries (embedded), recalls by meaning and by words."""
    def __init__(
        self, store: Store, embed_worker: ModelWorker[Embedder], embedder_id: str, *,
        chunk_chars: int = 400, max_cached_campaigns: int = 64, timeout_s: float = 120.0,
    ) -> None:
        self.store, self._worker, self.embedder_id = store, embed_worker, embedder_id
        self.chunk_chars, self._max_cached, self._timeout = chunk_chars, max_cached_campaigns, timeout_s
        self._index: OrderedDict[int, VectorIndex] = OrderedDict()
        self._sums: dict[int, tuple[np.ndarray, int]] = {}  # per cached index: the sum of its vectors, their count
        self._changes = 0  # counts store changes, so an index read during a change is not kept
        self._common: frozenset[str] | None = None  # the embedder's everyday words, read once
        self._common_read = False
        store.on_memory_change = self.follow_change

    def follow_change(self, campaign_id: int, added: Sequence[Memory], removed: Sequence[int] | None) -> None:
        """Keep the campaign's index in step with a commit, in place; drop it when that cannot be done."""
        self._changes += 1
        index = self._index.get(campaign_id)
        if index is None:
            return
        if removed is None:
            self._drop(campaign_id)
            return
        total, count = self._sums[campaign_id]
        for memory_id in removed:
            vector = index.vector(memory_id)
            if vector is not None:
                total, count = total - vector, count - 1
        index.remove(removed)
        for memory in added:
            if memory.vector is None or memory.embedder != self.embedder_id or memory.id in index:
                continue
            if not index.add(memory.id, memory.vector, turn_key(memory.turn_from, memory.pinned)):
                self._drop(campaign_id)  # a vector of another size: read it all again next time
                return
            total, count = (total if total.shape == memory.vector.shape else 0.0) + memory.vector, count + 1
        self._sums[campaign_id] = (total, count)

    def _drop(self, campaign_id: int) -> None:
        self._index.pop(campaign_id, None)
        self._sums.pop(campaign_id, None)

    def mean_vector(self, campaign_id: int) -> np.ndarray | None:
        """The mean of the campaign's entry vectors (its cached index's), kept up to date in place."""
        total, count = self._sums.get(campaign_id, (None, 0))
        return total / count if count else None

    def chunk(self, text: str) -> list[str]:
        return chunk_text(text, self.chunk_chars)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return await self._worker.call(lambda embedder: embedder.encode(texts), timeout=self._timeout)

    async def _entries(self, kind: str, texts: list[str], speakers: Sequence[str | None] | None = None,
                       **extra) -> list[NewMemory]:
        vectors = await self.embed(texts)
        speakers = speakers or [None] * len(texts)
        return [NewMemory(kind, t, v, self.embedder_id, speaker=who, **extra)
                for t, v, who in zip(texts, vectors, speakers)]

    async def turn_entries(self, actions: Sequence[Action], narration: str) -> list[NewMemory]:
        """Exact entries for one turn: each action and the narration, chunked and embedded as they are.
        The speaker's name goes beside an action's entry, not into the text that is embedded."""
        pieces = [(c, a.author_name) for a in actions for c in self.chunk(a.text)]
        pieces += [(c, None) for c in self.chunk(narration)]
        return await self._entries("exact", [p for p, _ in pieces], [who for _, who in pieces])

    async def summary_entry(self, summary: str, turn_from: int, turn_to: int) -> NewMemory:
        (entry,) = await self._entries("summary", [summary], turn_from=turn_from, turn_to=turn_to)
        return entry

    async def pin(self, campaign_id: int, fact: str) -> Memory:
        (entry,) = await self._entries("fact", [fact], pinned=True)
        return await self.store.add_memory(campaign_id, entry)

    async def _campaign_index(self, campaign_id: int) -> VectorIndex:
        if campaign_id in self._index:
            self._index.move_to_end(campaign_id)
            return self._index[campaign_id]
        changes = self._changes
        ids, matrix, keys = await self.store.memory_vectors(campaign_id, self.embedder_id)
        index = VectorIndex(ids, matrix, keys)
        if changes != self._changes:
            return index  # memories changed while we read: use this once, cache the next read
        self._index[campaign_id] = index
        self._sums[campaign_id] = (matrix.sum(axis=0, dtype=np.float64).astype(np.float32) if len(ids)
                                   else np.zeros(index.dim, np.float32), len(ids))
        while len(self._index) > self._max_cached:
            self._drop(next(iter(self._index)))
        return index

    async def probe(self, campaign_id: int, queries: str | Sequence[Query | str],
                    vectors: np.ndarray | None = None) -> Probe:
        """Embed the queries (unless their vectors are given) and find their rare words' entries, once
        for a turn: both at once (the embedder works in its thread while SQLite looks the words up)."""
        if isinstance(queries, str):
            queries = [queries]
        queries = [q if isinstance(q, Query) else Query(q) for q in queries]
        if vectors is None:
            queries = [q for q in queries if q.text.strip()]

        async def embedded() -> np.ndarray:
            if vectors is not None:
                return vectors
            return await self.embed([q.text for q in queries]) if queries else np.zeros((0, 0), np.float32)

        common = await self._common_words()  # (read once, from the embedder's thread)
        found, embedding = await asyncio.gather(self._rare_hits(campaign_id, queries, common), embedded())
        probe = Probe(queries, embedding)
        for rare, hits in found:
            probe.words.append(rare)
            probe.word_hits.append(hits)
        return probe

    async def _rare_hits(self, campaign_id: int, queries: Sequence[Query], common: frozenset[str] | None,
                         ) -> list[tuple[list[str], list[tuple[int, float]]]]:
        """Each query's rare words and the entries that hold them."""
        words = [distinctive_words(q.text, common) if q.by_words and not q.in_prompt else [] for q in queries]
        entries = len(await self._campaign_index(campaign_id))
        counts = await self.store.word_counts(sorted({w for ws in words for w in ws}), rare_limit(entries))
        found = []
        for query_words in words:
            rare = rare_words(query_words, counts, entries)
            found.append((rare, await self.store.search_words(campaign_id, rare, WORD_HITS)))
        return found

    async def _common_words(self) -> frozenset[str] | None:
        if not self._common_read:
            self._common = await self._worker.call(lambda embedder: embedder.common_words(), timeout=self._timeout)
            self._common_read = True
        return self._common

    async def recall(
        self, campaign_id: int, queries: str | Sequence[Query | str], *, top_k: int, min_score: float,
        recent_from_turn: int | None = None,
    ) -> list[Recalled]:
        """Pinned facts, then the top_k entries that best answer the queries (by meaning, at least
        min_score similar, or by rare words), no two alike. Entries that lie wholly in turns >=
        recent_from_turn are skipped: the prompt has them already."""
        probe = await self.probe(campaign_id, queries) if top_k > 0 else None
        return await self.search(campaign_id, probe, top_k=top_k, min_score=min_score,
                                 recent_from_turn=recent_from_turn)

    async def search(self, campaign_id: int, probe: Probe | None, *, top_k: int, min_score: float,
                     recent_from_turn: int | None) -> list[Recalled]:
        pinned = [Recalled(m, None) for m in await self.store.pinned_memories(campaign_id)]
        if probe is None or not probe.queries or top_k <= 0:
            return pinned
        index = await self._campaign_index(campaign_id)
        if len(index) == 0:
            return pinned
        skip_from = PINNED_KEY if recent_from_turn is None else recent_from_turn
        weights = np.array([[q.weight] for q in probe.queries], dtype=np.float32)
        queries = probe.vectors * weights
        # the best weighted similarities (candidates from the int8 rows, scored on float32), ranked again
        # below, each query against its own baseline
        pool = (top_k * 4 + 8) * 2
        ids, base = index.best(queries, skip_from, max(64, pool))
        found = [int(i) for i, score in zip(ids[:pool], base[:pool]) if score >= min_score]
        bonus: dict[int, float] = {}
        for hits in probe.word_hits:
            for memory_id, extra in word_bonus(hits).items():
                if memory_id in index and index.key(memory_id) < skip_from:
                    bonus[memory_id] = max(bonus.get(memory_id, 0.0), extra)
        scored = list(dict.fromkeys(found + list(bonus)))
        baseline = queries @ mean if (mean := self.mean_vector(campaign_id)) is not None else None
        relative = relative_scores(np.stack([index.vector(i) for i in scored]) if scored else
                                   np.zeros((0, queries.shape[1]), np.float32), queries, baseline)
        scores = {i: float(r) + bonus.get(i, 0.0) for i, r in zip(scored, relative)}
        memories = {m.id: m for m in await self.store.get_memories(list(scores))}
        own = owners(probe.queries)
        for memory in memories.values():
            if memory.speaker in own:
                scores[memory.id] += OWN_BONUS
        ranked = sorted(scores, key=lambda i: (-scores[i], -i))  # ties: the newer entry first
        return pinned + self._diverse(index, probe, ranked, memories, scores, set(bonus), top_k)

    @staticmethod
    def _diverse(index: VectorIndex, probe: Probe, ranked: list[int], memories: dict[int, Memory],
                 scores: dict[int, float], by_words: set[int], top_k: int) -> list[Recalled]:
        """The best entries, skipping any that says again what a chosen one (or the prompt) says. One
        found by a distinctive word is never a copy: that word is what sets it apart."""
        chosen: list[Recalled] = []
        kept = [probe.vectors[i] for i, q in enumerate(probe.queries) if q.in_prompt]
        all_words = {w for ws in probe.words for w in ws}
        word_slots_left = word_slots(top_k)
        for memory_id in ranked:
            memory, vector = memories.get(memory_id), index.vector(memory_id)
            if memory is None or vector is None or (memory_id in by_words and not word_slots_left):
                continue
            word_slots_left -= memory_id in by_words
            if memory_id not in by_words and kept and float(np.max(np.stack(kept) @ vector)) > NEAR_DUPLICATE:
                continue
            kept.append(vector)
            shared = tuple(w for w in content_words(memory.text) if w in all_words)
            similarity = float(np.max(probe.vectors @ vector))
            chosen.append(Recalled(memory, scores[memory_id], similarity, shared))
            if len(chosen) == top_k:
                break
        return chosen
