"""A whole campaign read out of the store at once, and written back in one transaction: the campaign as a file
(engine/table/record_file.py checks what a file holds; this only reads and writes rows).

A mixin of Store (engine/store/campaigns.py), which holds the connection, the lock and the transactions. The
read takes the lock once, so the export is one moment of the campaign; the write is one transaction, so an
import that fails half way leaves nothing behind. Turns, actions and memories keep their numbers, their
order and their timestamps; ids are the new file's own.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

import aiosqlite
import numpy as np

from engine.records import Campaign, Memory, campaign_from_row, memory_key, vector_blob

# (a turn's context as the file has it, old memory id -> new, old card id -> new) -> the context to store
ContextMap = Callable[[dict, dict[int, int], dict[int, int]], "dict | None"]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class RecordTables:
    """Needs Store's `_conn`, `_lock`, `_write` and `_memories_changed`."""

    async def campaign_record(self, campaign_id: int) -> dict[str, Any] | None:
        """Every row of the campaign as plain values (no memory vectors), read under one lock; None when there
        is no such campaign."""
        async with self._lock:  # type: ignore[attr-defined]
            conn: aiosqlite.Connection = self._conn  # type: ignore[attr-defined]

            async def rows(sql: str) -> list[Any]:
                return list(await conn.execute_fetchall(sql, (campaign_id,)))

            found = await rows("SELECT id, channel_id, name, premise, style, language, settings, active, created,"
                               " summarised_to FROM campaigns WHERE id = ?")
            if not found:
                return None
            actions = await rows("SELECT author_id, author_name, text, original, secret, created, turn_id FROM actions"
                                 " WHERE campaign_id = ? ORDER BY id")
            by_turn: dict[int | None, list[dict]] = {}
            for author_id, author_name, text, original, secret, created, turn_id in actions:
                by_turn.setdefault(turn_id, []).append({
                    "author_id": author_id, "author_name": author_name, "text": text, "original": original,
                    "secret": bool(secret), "created": created})
            turns = [{"number": number, "narration": narration, "shown": shown, "created": created,
                      "effects": None if effects is None else json.loads(effects),
                      "context": None if context is None else json.loads(context), "actions": by_turn.get(turn_id, [])}
                     for turn_id, number, narration, shown, created, effects, context in await rows(
                         "SELECT id, number, narration, shown, created, effects, context FROM turns"
                         " WHERE campaign_id = ? ORDER BY number")]
            fight = await rows("SELECT data FROM fights WHERE campaign_id = ?")
            return {
                "campaign": campaign_from_row(found[0][:9]), "summarised_to": found[0][9], "turns": turns,
                "pending": by_turn.get(None, []),
                "players": [{"author_id": a, "name": n, "joined": bool(j), "updated": u} for a, n, j, u in await rows(
                    "SELECT author_id, name, joined, updated FROM players WHERE campaign_id = ? ORDER BY updated")],
                "sheets": [{"author_id": a, "data": d, "updated": u} for a, d, u in await rows(
                    "SELECT author_id, data, updated FROM sheets WHERE campaign_id = ? ORDER BY updated")],
                "fight": fight[0][0] if fight else None,
                "quests": [{"id": i, "title": t, "giver": g, "reward": r, "status": s, "steps": json.loads(st),
                            "created": c, "updated": u} for i, t, g, r, s, st, c, u in await rows(
                    "SELECT id, title, giver, reward, status, steps, created, updated FROM quests"
                    " WHERE campaign_id = ? ORDER BY id")],
                "cards": [{"id": i, "keys": json.loads(k), "text": t, "written": w, "created": c}
                          for i, k, t, w, c in await rows(
                              "SELECT id, keys, text, written, created FROM cards WHERE campaign_id = ? ORDER BY id")],
                "looks": [{"name": n, "description": d, "updated": u} for n, d, u in await rows(
                    "SELECT name, description, updated FROM looks WHERE campaign_id = ? ORDER BY name")],
                "glossary": [{"source": s, "target": t, "auto": bool(a)} for s, t, a in await rows(
                    "SELECT source, target, auto FROM glossary WHERE campaign_id = ? ORDER BY source")],
                "memories": [{"id": i, "kind": k, "text": t, "speaker": s, "turn_from": f, "turn_to": to,
                              "pinned": bool(p), "created": c} for i, k, t, s, f, to, p, c in await rows(
                    "SELECT id, kind, text, speaker, turn_from, turn_to, pinned, created FROM memories"
                    " WHERE campaign_id = ? ORDER BY id")],
            }

    async def restore_campaign(self, channel_id: int, record: dict[str, Any], vectors: np.ndarray, embedder: str,
                               context: ContextMap) -> Campaign:
        """A new running campaign in the channel from `record` (campaign_record's shape, checked by the caller;
        `campaign` a dict of its fields), its memories with `vectors` (one row each, in order), all in one
        transaction. BadInput, nothing stored, when the channel has a campaign running."""
        memories = record["memories"]
        if len(vectors) != len(memories):
            raise ValueError(f"{len(memories)} memories but {len(vectors)} vectors")
        about = record["campaign"]
        async with self._write() as conn:  # type: ignore[attr-defined]
            await self._refuse_running(conn, channel_id)  # type: ignore[attr-defined]
            cursor = await conn.execute(
                "INSERT INTO campaigns (channel_id, name, premise, style, language, settings, active, created,"
                " summarised_to) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (channel_id, about["name"], about["premise"], about["style"], about["language"],
                 json.dumps(about["settings"]), about["created"], record["summarised_to"]))
            campaign_id = cursor.lastrowid
            card_ids = await self._restore_cards(conn, campaign_id, record["cards"])
            memory_ids, added = await self._restore_memories(conn, campaign_id, memories, vectors, embedder)
            await self._restore_turns(conn, campaign_id, record, memory_ids, card_ids, context)
            await self._restore_table(conn, campaign_id, record)
            rows = await conn.execute_fetchall(
                "SELECT id, channel_id, name, premise, style, language, settings, active, created FROM campaigns"
                " WHERE id = ?", (campaign_id,))
        self._memories_changed(campaign_id, added)  # type: ignore[attr-defined]
        return campaign_from_row(list(rows)[0])

    @staticmethod
    async def _restore_cards(conn: aiosqlite.Connection, campaign_id: int, cards: Sequence[dict]) -> dict[int, int]:
        ids = {}
        for card in cards:
            cursor = await conn.execute(
                "INSERT INTO cards (campaign_id, keys, text, written, created) VALUES (?, ?, ?, ?, ?)",
                (campaign_id, json.dumps(list(card["keys"]), ensure_ascii=False), card["text"], card["written"],
                 card["created"]))
            if card.get("id") is not None:
                ids[card["id"]] = cursor.lastrowid
        return ids

    @staticmethod
    async def _restore_memories(conn: aiosqlite.Connection, campaign_id: int, memories: Sequence[dict],
                                vectors: np.ndarray, embedder: str) -> tuple[dict[int, int], list[Memory]]:
        rows = []
        for memory, vector in zip(memories, vectors):
            blob, dim = vector_blob(vector)
            rows.append((campaign_id, memory["kind"], memory["text"],
                         memory_key(memory["text"], memory["speaker"], memory["pinned"]), blob, dim, embedder,
                         memory["turn_from"], memory["turn_to"], int(memory["pinned"]), memory["created"],
                         memory["speaker"]))
        await conn.executemany(
            "INSERT INTO memories (campaign_id, kind, text, content_hash, vector, dim, embedder, turn_from, turn_to,"
            " pinned, created, speaker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # The campaign is new and this transaction holds the file: its memories' ids, in id order, are these rows.
        new_ids = [row[0] for row in await conn.execute_fetchall(
            "SELECT id FROM memories WHERE campaign_id = ? ORDER BY id", (campaign_id,))]
        added = [Memory(new_id, campaign_id, m["kind"], m["text"], np.asarray(v, dtype=np.float32), embedder,
                        m["turn_from"], m["turn_to"], bool(m["pinned"]), m["created"], m["speaker"])
                 for new_id, m, v in zip(new_ids, memories, vectors)]
        return {m["id"]: new for m, new in zip(memories, new_ids) if m.get("id") is not None}, added

    @staticmethod
    async def _restore_turns(conn: aiosqlite.Connection, campaign_id: int, record: dict, memory_ids: dict[int, int],
                             card_ids: dict[int, int], context: ContextMap) -> None:
        turns = record["turns"]
        await conn.executemany(
            "INSERT INTO turns (campaign_id, number, narration, created, shown, effects, context)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(campaign_id, t["number"], t["narration"], t["created"], t["shown"], _dumps(t["effects"]),
              _dumps(None if t["context"] is None else context(t["context"], memory_ids, card_ids))) for t in turns])
        turn_ids = {number: turn_id for turn_id, number in await conn.execute_fetchall(
            "SELECT id, number FROM turns WHERE campaign_id = ?", (campaign_id,))}
        actions = [(a, turn_ids[t["number"]]) for t in turns for a in t["actions"]]
        actions += [(a, None) for a in record["pending"]]
        await conn.executemany(
            "INSERT INTO actions (campaign_id, author_id, author_name, text, created, turn_id, original, secret)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(campaign_id, a["author_id"], a["author_name"], a["text"], a["created"], turn_id, a["original"],
              int(a["secret"])) for a, turn_id in actions])

    @staticmethod
    async def _restore_table(conn: aiosqlite.Connection, campaign_id: int, record: dict) -> None:
        now = time.time()
        await conn.executemany(
            "INSERT INTO players (campaign_id, author_id, name, joined, updated) VALUES (?, ?, ?, ?, ?)",
            [(campaign_id, p["author_id"], p["name"], int(p["joined"]), p.get("updated", now))
             for p in record["players"]])
        await conn.executemany(
            "INSERT INTO sheets (campaign_id, author_id, data, updated) VALUES (?, ?, ?, ?)",
            [(campaign_id, s["author_id"], s["data"], s.get("updated", now)) for s in record["sheets"]])
        if record["fight"] is not None:
            await conn.execute("INSERT INTO fights (campaign_id, data, updated) VALUES (?, ?, ?)",
                               (campaign_id, record["fight"], now))
        await conn.executemany(
            "INSERT INTO quests (campaign_id, title, giver, reward, status, steps, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(campaign_id, q["title"], q["giver"], q["reward"], q["status"], json.dumps(list(q["steps"]),
              ensure_ascii=False), q["created"], q["updated"]) for q in record["quests"]])
        await conn.executemany(
            "INSERT INTO looks (campaign_id, name, description, updated) VALUES (?, ?, ?, ?)",
            [(campaign_id, look["name"], look["description"], look.get("updated", now)) for look in record["looks"]])
        await conn.executemany(
            "INSERT INTO glossary (campaign_id, source, target, auto) VALUES (?, ?, ?, ?)",
            [(campaign_id, g["source"], g["target"], int(g["auto"])) for g in record["glossary"]])
