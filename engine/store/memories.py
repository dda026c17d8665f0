"""The store's memory tables: entries with their vectors, one copy of each, and their words (FTS5).

A mixin of Store (engine/store/campaigns.py), which holds the connection, the lock and the transactions. The
FTS5 index follows the memories table through triggers (migration 4), so it changes in the same
transaction as the rows. Every commit that adds or removes memories tells `on_memory_change` exactly
which, so the in-memory vector index can follow in place instead of being rebuilt.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Sequence

import aiosqlite
import numpy as np

from engine.records import Memory, NewMemory, memory_from_row, memory_key, vector_blob

log = logging.getLogger(__name__)

MEMORY_COLUMNS = "id, campaign_id, kind, text, vector, embedder, turn_from, turn_to, pinned, created, speaker"
IDS = "(SELECT value FROM json_each(?))"  # a list of ids as one JSON parameter, any length
# (campaign id, memories added, ids removed); removed is None when the change is not known row by row.
MemoryListener = Callable[[int, Sequence[Memory], "Sequence[int] | None"], None]


PINNED_KEY = 2**62  # the turn key of a pinned fact: skipped by every search (pinned facts come anyway)


def turn_key(turn_from: int | None, pinned: bool | int) -> int:
    """What recall compares with the first turn the prompt's window holds: an entry whose key is at
    least that lies wholly in the window and is skipped; one outside every turn (-1) never is."""
    return PINNED_KEY if pinned else (-1 if turn_from is None else int(turn_from))


def _phrase(word: str) -> str:
    """A word as an FTS5 query that matches it literally, whatever characters it holds."""
    return '"' + word.replace('"', '""') + '"'


class MemoryTables:
    """Needs Store's `_rows`, `_value`, `_write` and `on_memory_change`."""

    def _memories_changed(self, campaign_id: int, added: Sequence[Memory] = (),
                          removed: Sequence[int] | None = ()) -> None:
        if self.on_memory_change is None or (not added and removed is not None and not removed):
            return
        try:
            self.on_memory_change(campaign_id, added, removed)
        except Exception:  # the commit stands; a broken listener must not fail the caller
            log.exception("on_memory_change failed for campaign %d", campaign_id)

    async def _insert_memories(self, conn: aiosqlite.Connection, campaign_id: int,
                               memories: Sequence[NewMemory], number: int | None) -> list[Memory]:
        """Insert those not stored yet: an entry whose normalised text (and speaker) the campaign
        already has is skipped, so a model that repeats itself cannot fill recall with copies."""
        added, seen = [], set()
        for memory in memories:
            key = memory_key(memory.text, memory.speaker, memory.pinned)
            turn_from = number if memory.turn_from is None else memory.turn_from
            turn_to = number if memory.turn_to is None else memory.turn_to
            if memory.kind == "summary":  # summarised this far, even when this summary is a copy
                await self._summarised(conn, campaign_id, turn_to)
            if key in seen or await conn.execute_fetchall(
                    "SELECT 1 FROM memories WHERE campaign_id = ? AND content_hash = ? LIMIT 1", (campaign_id, key)):
                continue
            seen.add(key)
            blob, dim = vector_blob(memory.vector)
            created = time.time()
            cursor = await conn.execute(
                "INSERT INTO memories (campaign_id, kind, text, content_hash, vector, dim,"
                " embedder, turn_from, turn_to, pinned, created, speaker)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (campaign_id, memory.kind, memory.text, key, blob, dim, memory.embedder, turn_from, turn_to,
                 int(memory.pinned), created, memory.speaker))
            vector = None if blob is None else np.frombuffer(blob, dtype=np.float32)
            added.append(Memory(cursor.lastrowid, campaign_id, memory.kind, memory.text, vector, memory.embedder,
                                turn_from, turn_to, bool(memory.pinned), created, memory.speaker))
        return added

    @staticmethod
    async def _delete_memories(conn: aiosqlite.Connection, where: str, params: Sequence[Any]) -> list[int]:
        rows = await conn.execute_fetchall(f"DELETE FROM memories WHERE {where} RETURNING id", params)
        return [row[0] for row in rows]

    async def add_memory(self, campaign_id: int, memory: NewMemory) -> Memory:
        """Add one memory; its turn range is kept as given (None stays None). When the campaign
        already holds the same one, that one is returned and nothing is added."""
        key = memory_key(memory.text, memory.speaker, memory.pinned)
        async with self._write() as conn:
            added = await self._insert_memories(conn, campaign_id, [memory], None)
            if not added:
                rows = await conn.execute_fetchall(
                    f"SELECT {MEMORY_COLUMNS} FROM memories WHERE campaign_id = ? AND content_hash = ?"
                    " ORDER BY id LIMIT 1", (campaign_id, key))
                return memory_from_row(rows[0])
        self._memories_changed(campaign_id, added)
        return added[0]

    async def memories(self, campaign_id: int, embedder: str | None = None) -> list[Memory]:
        """Pinned ones first, then by id; only that embedder's when one is given."""
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE campaign_id = ?"
            " AND (? IS NULL OR embedder = ?) ORDER BY pinned DESC, id", (campaign_id, embedder, embedder))
        return [memory_from_row(row) for row in rows]

    async def pinned_memories(self, campaign_id: int) -> list[Memory]:
        """The campaign's pinned facts, oldest first (the index on campaign, pinned, id: no scan)."""
        rows = await self._rows(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE campaign_id = ? AND pinned = 1"
                                " ORDER BY id", (campaign_id,))
        return [memory_from_row(row) for row in rows]

    async def memory_vectors(self, campaign_id: int, embedder: str) -> tuple[list[int], np.ndarray, list[int]]:
        """Ids, an (n, dim) float32 matrix of that embedder's vectors ((0, 0) when none) and each
        one's turn key (see `turn_key`), for the in-memory index."""
        rows = await self._rows(
            "SELECT id, dim, vector, turn_from, pinned FROM memories WHERE campaign_id = ? AND embedder = ?"
            " AND vector IS NOT NULL ORDER BY id", (campaign_id, embedder))
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32), []
        dim = rows[-1][1]
        if any(row[1] != dim for row in rows):
            log.warning("campaign %d: embedder %r has vectors of several sizes; keeping size %d",
                        campaign_id, embedder, dim)
            rows = [row for row in rows if row[1] == dim]
        matrix = np.frombuffer(bytearray().join(row[2] for row in rows), dtype=np.float32)
        return [row[0] for row in rows], matrix.reshape(len(rows), dim), [turn_key(r[3], r[4]) for r in rows]

    async def get_memories(self, ids: Sequence[int]) -> list[Memory]:
        """Those memories in the order of `ids`; ids that do not exist are skipped."""
        ids = [int(i) for i in ids]  # numpy integers from an index are welcome too
        rows = await self._rows(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id IN {IDS}",
                                (json.dumps(ids),))
        found = {row[0]: memory_from_row(row) for row in rows}
        return [found[i] for i in ids if i in found]

    async def word_counts(self, words: Sequence[str], cap: int = 1 << 30) -> dict[str, int]:
        """How many memories (of all campaigns) hold each word, counting no further than cap + 1:
        FTS5 reads a word's rows lazily, so a common word costs no more than a rare one."""
        if not words:
            return {}
        one = "SELECT ?, (SELECT COUNT(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?))"
        params = [p for w in words for p in (w, _phrase(w), cap + 1)]
        rows = await self._rows(" UNION ALL ".join([one] * len(words)), params)
        return {word: count for word, count in rows if count}

    async def search_words(self, campaign_id: int, words: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """(id, BM25 score: higher is better) of the campaign's memories holding any of `words`."""
        if not words:
            return []
        match = " OR ".join(_phrase(w) for w in words)
        rows = await self._rows(
            "SELECT f.rowid, -bm25(memories_fts) AS score FROM memories_fts AS f JOIN memories AS m"
            " ON m.id = f.rowid WHERE memories_fts MATCH ? AND m.campaign_id = ? ORDER BY score DESC LIMIT ?",
            (match, campaign_id, limit))
        return [(row[0], row[1]) for row in rows]

    async def delete_memory(self, campaign_id: int, memory_id: int) -> bool:
        async with self._write() as conn:
            removed = await self._delete_memories(conn, "id = ? AND campaign_id = ?", (memory_id, campaign_id))
        self._memories_changed(campaign_id, (), removed)
        return bool(removed)

    async def reset_memory(self, campaign_id: int, keep_pinned: bool = False) -> int:
        """Delete the campaign's memories (pinned ones too unless keep_pinned); returns how many."""
        async with self._write() as conn:
            removed = await self._delete_memories(conn, "campaign_id = ? AND (pinned = 0 OR NOT ?)",
                                                  (campaign_id, keep_pinned))
            # the summaries are gone: the whole story is summarised anew, as for a new campaign
            await conn.execute("UPDATE campaigns SET summarised_to = 0 WHERE id = ?", (campaign_id,))
        self._memories_changed(campaign_id, (), removed)
        return len(removed)

    async def memory_count(self, campaign_id: int) -> int:
        return await self._value(
            "SELECT COUNT(*) FROM memories WHERE campaign_id = ?", (campaign_id,))

    async def last_summary_turn(self, campaign_id: int) -> int:
        """The last turn the campaign's summaries cover (0: none)."""
        return await self._value("SELECT COALESCE(MAX(summarised_to), 0) FROM campaigns WHERE id = ?",
                                 (campaign_id,))

    async def mark_summarised(self, campaign_id: int, turn_to: int) -> None:
        """The story up to turn_to is summarised although no summary was kept (it said nothing)."""
        async with self._write() as conn:
            await self._summarised(conn, campaign_id, turn_to)

    @staticmethod
    async def _summarised(conn: aiosqlite.Connection, campaign_id: int, turn_to: int | None) -> None:
        await conn.execute("UPDATE campaigns SET summarised_to = MAX(summarised_to, ?) WHERE id = ?",
                           (turn_to or 0, campaign_id))
