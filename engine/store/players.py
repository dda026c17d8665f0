"""The store's tables about the table rather than the story: who plays in the rounds, story cards,
character sheets and the fight (stored as their JSON; engine/game/ reads it), quests.

A mixin of Store (engine/store/campaigns.py), which holds the connection, the lock and the transactions.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Sequence, TypeVar

import aiosqlite

from engine.records import Card, Quest

T = TypeVar("T", bound=tuple)
_CARD_COLUMNS = "id, campaign_id, keys, text, written, created"


def _card(row: Sequence) -> Card:
    return Card(row[0], row[1], tuple(json.loads(row[2])), *row[3:])


_QUEST_COLUMNS = "id, campaign_id, title, giver, reward, status, steps, created, updated"


def _quest(row: Sequence) -> Quest:
    return Quest(*row[:6], tuple(json.loads(row[6])), *row[7:])


class TableTables:
    """Needs Store's `_rows` and `_write`."""

    async def set_player(self, campaign_id: int, author_id: int, name: str, *, joined: bool) -> None:
        """A player joins the rounds (they are waited for) or steps away (they are not)."""
        async with self._write() as conn:  # type: ignore[attr-defined]
            await conn.execute(
                "INSERT INTO players (campaign_id, author_id, name, joined, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (campaign_id, author_id) DO UPDATE SET name = excluded.name,"
                " joined = excluded.joined, updated = excluded.updated",
                (campaign_id, author_id, name, int(joined), time.time()))

    async def players(self, campaign_id: int) -> dict[int, tuple[str, bool]]:
        """author id -> (name, joined) for everyone who joined or stepped away."""
        rows = await self._rows(  # type: ignore[attr-defined]
            "SELECT author_id, name, joined FROM players WHERE campaign_id = ? ORDER BY updated", (campaign_id,))
        return {author: (name, bool(joined)) for author, name, joined in rows}

    # --- character sheets ---
    async def sheets(self, campaign_id: int) -> dict[int, str]:
        """author id -> their sheet's JSON, in the order they were last changed."""
        rows = await self._rows(  # type: ignore[attr-defined]
            "SELECT author_id, data FROM sheets WHERE campaign_id = ? ORDER BY updated", (campaign_id,))
        return {author: data for author, data in rows}

    async def save_sheet(self, campaign_id: int, author_id: int, data: str) -> None:
        async with self._write() as conn:  # type: ignore[attr-defined]
            await self._save_sheets(conn, campaign_id, {author_id: data})

    async def change_sheet(self, campaign_id: int, author_id: int, change: Callable[[str | None], T]) -> T:
        """Read a sheet and store `change(its JSON or None)`'s new JSON (the first of what it returns) in one
        transaction: a turn's markers saved meanwhile are never overwritten. What `change` raises stores nothing."""
        async with self._write() as conn:  # type: ignore[attr-defined]
            result = change((await self._sheets_in(conn, campaign_id)).get(author_id))
            await self._save_sheets(conn, campaign_id, {author_id: result[0]})
        return result

    @staticmethod
    async def _sheets_in(conn: aiosqlite.Connection, campaign_id: int) -> dict[int, str]:
        rows = await conn.execute_fetchall("SELECT author_id, data FROM sheets WHERE campaign_id = ?", (campaign_id,))
        return {author: data for author, data in rows}

    @staticmethod
    async def _save_sheets(conn: aiosqlite.Connection, campaign_id: int, sheets: dict[int, str]) -> None:
        await conn.executemany(
            "INSERT INTO sheets (campaign_id, author_id, data, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (campaign_id, author_id) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            [(campaign_id, author, data, time.time()) for author, data in sheets.items()])

    # --- the fight: one per campaign at most, engine/game/combat.py's JSON ---
    async def fight(self, campaign_id: int) -> str | None:
        rows = await self._rows("SELECT data FROM fights WHERE campaign_id = ?", (campaign_id,))  # type: ignore[attr-defined]
        return rows[0][0] if rows else None

    async def change_fight(self, campaign_id: int, change: Callable[[str | None], T]) -> T:
        """Read the fight and store `change(its JSON or None)`'s new JSON (the first of what it returns; None ends
        the fight) in one transaction. What `change` raises stores nothing."""
        async with self._write() as conn:  # type: ignore[attr-defined]
            result = change(await self._fight_in(conn, campaign_id))
            await self._save_fight(conn, campaign_id, result[0])
        return result

    @staticmethod
    async def _fight_in(conn: aiosqlite.Connection, campaign_id: int) -> str | None:
        rows = await conn.execute_fetchall("SELECT data FROM fights WHERE campaign_id = ?", (campaign_id,))
        return rows[0][0] if rows else None

    @staticmethod
    async def _save_fight(conn: aiosqlite.Connection, campaign_id: int, data: str | None) -> None:
        if data is None:
            await conn.execute("DELETE FROM fights WHERE campaign_id = ?", (campaign_id,))
        else:
            await conn.execute("INSERT INTO fights (campaign_id, data, updated) VALUES (?, ?, ?) ON CONFLICT"
                               " (campaign_id) DO UPDATE SET data = excluded.data, updated = excluded.updated",
                               (campaign_id, data, time.time()))

    # --- quests ---
    async def add_quest(self, campaign_id: int, title: str, giver: str = "", reward: str = "") -> Quest:
        now = time.time()
        async with self._write() as conn:  # type: ignore[attr-defined]
            rows = await conn.execute_fetchall(
                f"INSERT INTO quests (campaign_id, title, giver, reward, created, updated) VALUES (?, ?, ?, ?, ?, ?)"
                f" RETURNING {_QUEST_COLUMNS}", (campaign_id, title, giver, reward, now, now))
        return _quest(list(rows)[0])

    async def quests(self, campaign_id: int) -> list[Quest]:
        rows = await self._rows(  # type: ignore[attr-defined]
            f"SELECT {_QUEST_COLUMNS} FROM quests WHERE campaign_id = ? ORDER BY id", (campaign_id,))
        return [_quest(row) for row in rows]

    async def update_quest(self, campaign_id: int, quest_id: int, *, status: str | None = None,
                           step: str | None = None) -> Quest | None:
        """A quest's new status, or one more step; None when the campaign has no such quest."""
        async with self._write() as conn:  # type: ignore[attr-defined]
            rows = await conn.execute_fetchall(
                f"SELECT {_QUEST_COLUMNS} FROM quests WHERE campaign_id = ? AND id = ?", (campaign_id, quest_id))
            if not rows:
                return None
            quest = _quest(list(rows)[0])
            steps = [*quest.steps, step] if step is not None else list(quest.steps)
            rows = await conn.execute_fetchall(
                f"UPDATE quests SET status = ?, steps = ?, updated = ? WHERE id = ? RETURNING {_QUEST_COLUMNS}",
                (status or quest.status, json.dumps(steps, ensure_ascii=False), time.time(), quest_id))
        return _quest(list(rows)[0])

    # --- story cards ---
    async def add_card(self, campaign_id: int, keys: Sequence[str], text: str, written: str) -> Card:
        async with self._write() as conn:  # type: ignore[attr-defined]
            rows = await conn.execute_fetchall(
                f"INSERT INTO cards (campaign_id, keys, text, written, created) VALUES (?, ?, ?, ?, ?)"
                f" RETURNING {_CARD_COLUMNS}", (campaign_id, json.dumps(list(keys)), text, written, time.time()))
        return _card(list(rows)[0])

    async def cards(self, campaign_id: int) -> list[Card]:
        rows = await self._rows(  # type: ignore[attr-defined]
            f"SELECT {_CARD_COLUMNS} FROM cards WHERE campaign_id = ? ORDER BY id", (campaign_id,))
        return [_card(row) for row in rows]

    async def remove_card(self, campaign_id: int, card_id: int) -> bool:
        async with self._write() as conn:  # type: ignore[attr-defined]
            cursor = await conn.execute("DELETE FROM cards WHERE campaign_id = ? AND id = ?", (campaign_id, card_id))
        return cursor.rowcount > 0
