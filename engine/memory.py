"""Long-term memory: exact entries and summaries, embedded, recalled by similarity within a budget.

Vectors of a campaign are scored with numpy from an in-memory index. The store calls back on every
change of a campaign's memories and the index is dropped, so it never drifts from the database.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.embeddings import Embedder
from engine.records import Action, Memory, NewMemory
from engine.store import Store
from engine.worker import ModelWorker

log = logging.getLogger(__name__)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


@dataclass(frozen=True)
class Recalled:
    memory: Memory
    score: float | None  # None for pinned facts, which come regardless of score


def chunk_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends where possible, words kept whole."""
    pieces: list[str] = []
    current = ""
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        while len(sentence) > limit:  # one overlong sentence: cut at the last space before the limit
            if current:  # what came before goes first: pieces stay in the story's order
                pieces.append(current)
                current = ""
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


class MemoryBank:
    def __init__(
        self, store: Store, embed_worker: ModelWorker[Embedder], embedder_id: str, *,
        chunk_chars: int = 400, max_cached_campaigns: int = 64, timeout_s: float = 120.0,
    ) -> None:
        self.store, self._worker, self.embedder_id = store, embed_worker, embedder_id
        self.chunk_chars, self._max_cached, self._timeout = chunk_chars, max_cached_campaigns, timeout_s
        self._index: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._changes = 0  # counts store changes, so an index read during a change is not kept
        store.on_memory_change = self.forget_index

    def forget_index(self, campaign_id: int) -> None:
        self._changes += 1
        self._index.pop(campaign_id, None)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return await self._worker.call(lambda embedder: embedder.encode(texts), timeout=self._timeout)

    async def _entries(self, kind: str, texts: list[str], **extra) -> list[NewMemory]:
        vectors = await self.embed(texts)
        return [NewMemory(kind, t, v, self.embedder_id, **extra) for t, v in zip(texts, vectors)]

    async def turn_entries(self, actions: Sequence[Action], narration: str) -> list[NewMemory]:
        """Exact entries for one turn: each action and the narration, chunked and embedded as they are."""
        texts = [c for a in actions for c in chunk_text(f"{a.author_name}: {a.text}", self.chunk_chars)]
        texts += chunk_text(narration, self.chunk_chars)
        return await self._entries("exact", texts)

    async def summary_entry(self, summary: str, turn_from: int, turn_to: int) -> NewMemory:
        (entry,) = await self._entries("summary", [summary], turn_from=turn_from, turn_to=turn_to)
        return entry

    async def pin(self, campaign_id: int, fact: str) -> Memory:
        (entry,) = await self._entries("fact", [fact], pinned=True)
        return await self.store.add_memory(campaign_id, entry)

    async def _campaign_index(self, campaign_id: int) -> tuple[np.ndarray, np.ndarray]:
        if campaign_id in self._index:
            self._index.move_to_end(campaign_id)
            return self._index[campaign_id]
        changes = self._changes
        ids, matrix = await self.store.memory_vectors(campaign_id, self.embedder_id)
        index = (np.asarray(ids, dtype=np.int64), matrix)
        if changes != self._changes:
            return index  # memories changed while we read: use this once, cache the next read
        self._index[campaign_id] = index
        while len(self._index) > self._max_cached:
            self._index.popitem(last=False)
        return index

    async def recall(
        self, campaign_id: int, query: str, *, top_k: int, min_score: float, recent_from_turn: int | None = None
    ) -> list[Recalled]:
        """Pinned facts, then the top_k entries most similar to `query` scoring at least min_score.

        Entries that lie wholly in turns >= recent_from_turn are skipped: the prompt has them already.
        """
        pinned = await self.store.memories(campaign_id, pinned_only=True)
        found = [Recalled(m, None) for m in pinned]
        if top_k <= 0 or not query.strip():
            return found
        (vector,) = await self.embed([query])
        return found + await self.search(campaign_id, vector, top_k, min_score, recent_from_turn)

    async def search(
        self, campaign_id: int, vector: np.ndarray, top_k: int, min_score: float, recent_from_turn: int | None
    ) -> list[Recalled]:
        ids, matrix = await self._campaign_index(campaign_id)
        if len(ids) == 0:
            return []
        scores = matrix @ vector
        # Look at a few more than top_k: some candidates are pinned or already in the recent story.
        wanted = min(len(ids), top_k * 4 + 8)
        best = np.argpartition(-scores, wanted - 1)[:wanted] if wanted < len(ids) else np.arange(len(ids))
        best = best[np.argsort(-scores[best])]
        best = best[scores[best] >= min_score]
        memories = await self.store.get_memories([int(i) for i in ids[best]])
        chosen = []
        for memory, score in zip(memories, scores[best]):
            in_recent = recent_from_turn is not None and memory.turn_from is not None and memory.turn_from >= recent_from_turn
            if not memory.pinned and not in_recent:
                chosen.append(Recalled(memory, float(score)))
            if len(chosen) == top_k:
                break
        return chosen
