"""The campaign store: campaigns, pending actions, turns and memories (with vectors) in SQLite.

One aiosqlite connection in autocommit mode; each write is an explicit BEGIN IMMEDIATE transaction.
Reads take the same asyncio.Lock as writes: on one shared connection, a read slipping in between
the statements of another coroutine's transaction would see its uncommitted rows.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

import aiosqlite

from engine.errors import BadInput, Unavailable
from engine.store.memories import IDS, MemoryListener, MemoryTables
from engine.store.migrations import apply_migrations
from engine.records import Action, Campaign, Memory, NewMemory, Turn, campaign_from_row
from engine.store.players import TableTables
from engine.store.records_io import RecordTables

log = logging.getLogger(__name__)
T = TypeVar("T")


_CAMPAIGN_COLUMNS = "id, channel_id, name, premise, style, language, settings, active, created"
_ACTION_COLUMNS = "id, campaign_id, author_id, author_name, text, created, turn_id, original, secret"
_TURN_COLUMNS = "id, campaign_id, number, narration, created, shown, effects"
# Settle a turn's markers on the sheets and the fight: (the sheets' JSON by author, the fight's JSON or None, the
# turn's effects before: None for a new turn) -> (the sheets it changed, the fight after, the turn's effects now).
# Called inside the save's transaction; Revert takes a turn's effects back the same way.
Settle = Callable[[dict[int, str], "str | None", "dict | None"], tuple[dict[int, str], "str | None", dict]]
Revert = Callable[[dict[int, str], "str | None", "dict | None"], tuple[dict[int, str], "str | None"]]


def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value)



def busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for another connection's lock (after busy_timeout)."""
    return "locked" in str(exc) or "busy" in str(exc)

class Store(MemoryTables, TableTables, RecordTables):
    """The one SQLite file: one connection, one write lock, every table (campaigns, actions, turns; mixins for the rest)."""
    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()
        # Called after a commit that added or removed memories: (campaign id, added, removed ids).
        self.on_memory_change: MemoryListener | None = None

    @classmethod
    async def open(cls, path: str) -> Store:
        file = Path(path).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(file), isolation_level=None)
        try:
            # Close each cursor at once: a PRAGMA that returns a row keeps its statement open
            # until the cursor goes, and an open statement makes the migration's COMMIT fail.
            for pragma in ("PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"):
                async with conn.execute(pragma):
                    pass
            await apply_migrations(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, str(file))

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    await self._conn.commit()
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        await self._conn.rollback()
                    raise
            except sqlite3.OperationalError as exc:
                if not busy(exc):
                    raise
                # another program (a backup, sqlite3 by hand) holds the file past the busy timeout
                raise Unavailable("the campaign's database is busy; nothing was saved, try again in a moment") from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, params))

    async def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return (await self._rows(sql, params))[0][0]

    # ----- campaigns -----

    async def _campaign_where(self, where: str, params: Sequence[Any]) -> Campaign | None:
        rows = await self._rows(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE {where}", params)
        return campaign_from_row(rows[0]) if rows else None

    async def create_campaign(self, channel_id: int, name: str, premise: str = "", style: str = "",
                              language: str = "en", settings: dict | None = None) -> Campaign:
        name = name.strip()
        if not name:
            raise BadInput("a campaign needs a name")
        async with self._write() as conn:
            await self._refuse_running(conn, channel_id)
            cursor = await conn.execute(
                "INSERT INTO campaigns (channel_id, name, premise, style, language, settings,"
                " active, created) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (channel_id, name, premise, style, language, json.dumps(settings or {}),
                 time.time()))
        return await self.get_campaign(cursor.lastrowid)

    @staticmethod
    async def _refuse_running(conn: aiosqlite.Connection, channel_id: int) -> None:
        """BadInput when the channel has a campaign running (checked inside the transaction that starts one)."""
        running = await conn.execute_fetchall(
            "SELECT name FROM campaigns WHERE channel_id = ? AND active = 1", (channel_id,))
        if running:
            raise BadInput(f"this channel already has a campaign running: {running[0][0]}")

    async def get_campaign(self, campaign_id: int) -> Campaign | None:
        return await self._campaign_where("id = ?", (campaign_id,))

    async def campaign_for_channel(self, channel_id: int) -> Campaign | None:
        return await self._campaign_where("channel_id = ? AND active = 1", (channel_id,))

    async def list_campaigns(self) -> list[Campaign]:
        rows = await self._rows(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns ORDER BY id")
        return [campaign_from_row(row) for row in rows]

    async def update_campaign(self, campaign_id: int, *, premise: str | None = None,
                              style: str | None = None, language: str | None = None,
                              settings: dict | None = None) -> Campaign:
        """Change only the fields given; settings, when given, replaces the whole dict."""
        changes = {"premise": premise, "style": style, "language": language,
                   "settings": None if settings is None else json.dumps(settings)}
        changes = {column: value for column, value in changes.items() if value is not None}
        async with self._write() as conn:
            assignments = ", ".join(f"{column} = ?" for column in changes) or "id = id"
            cursor = await conn.execute(f"UPDATE campaigns SET {assignments} WHERE id = ?",
                                        (*changes.values(), campaign_id))
            if cursor.rowcount == 0:
                raise BadInput(f"there is no campaign {campaign_id}")
        return await self.get_campaign(campaign_id)

    async def end_campaign(self, campaign_id: int) -> None:
        """Mark the campaign inactive; its turns and memories are kept."""
        async with self._write() as conn:
            cursor = await conn.execute("UPDATE campaigns SET active = 0 WHERE id = ?",
                                        (campaign_id,))
            if cursor.rowcount == 0:
                raise BadInput(f"there is no campaign {campaign_id}")

    # ----- actions -----

    async def add_action(self, campaign_id: int, author_id: int, author_name: str,
                         text: str, message_id: int | None = None, *, secret: bool = False) -> Action:
        created = time.time()
        async with self._write() as conn:
            cursor = await conn.execute(
                "INSERT INTO actions (campaign_id, author_id, author_name, text, created, message_id, secret)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (campaign_id, author_id, author_name, text, created, message_id, int(secret)))
        return Action(cursor.lastrowid, campaign_id, author_id, author_name, text, created, None, None, secret)

    async def recent_rolls(self, campaign_id: int, limit: int = 10) -> list[Action]:
        """The campaign's latest rolls (actions that are a roll), newest first, secret ones too."""
        rows = await self._rows(f"SELECT {_ACTION_COLUMNS} FROM actions WHERE campaign_id = ? AND text LIKE ?"
                                " ORDER BY id DESC LIMIT ?", (campaign_id, "[rolled %", limit))
        return [Action(*row) for row in rows]

    async def withdraw_action(self, *, message_id: int | None = None, campaign_id: int | None = None,
                              author_id: int | None = None) -> Action | None:
        """Withdraw the pending action of that message, or that author's latest pending one in the
        campaign; an action already part of a turn stays (the story is written)."""
        where, params = (("message_id = ?", (message_id,)) if message_id is not None else
                         ("campaign_id = ? AND author_id = ?", (campaign_id, author_id)))
        async with self._write() as conn:
            rows = await conn.execute_fetchall(
                f"DELETE FROM actions WHERE id = (SELECT id FROM actions WHERE {where} AND turn_id IS NULL"
                f" ORDER BY id DESC LIMIT 1) RETURNING {_ACTION_COLUMNS}", params)
        return Action(*rows[0]) if rows else None

    async def edit_action(self, message_id: int, text: str) -> Action | None:
        """The pending action of that message with its new text (a new translation is made next turn)."""
        async with self._write() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE actions SET text = ?, original = NULL WHERE message_id = ? AND turn_id IS NULL"
                f" RETURNING {_ACTION_COLUMNS}", (text, message_id))
        return Action(*rows[0]) if rows else None

    async def translate_actions(self, translations: dict[int, str]) -> None:
        """Swap pending actions' text for its translation, keeping what the player wrote beside it."""
        async with self._write() as conn:
            await conn.executemany(
                "UPDATE actions SET original = text, text = ? WHERE id = ? AND original IS NULL"
                " AND turn_id IS NULL", [(text, action_id) for action_id, text in translations.items()])

    async def pending_actions(self, campaign_id: int) -> list[Action]:
        rows = await self._rows(
            f"SELECT {_ACTION_COLUMNS} FROM actions WHERE campaign_id = ? AND turn_id IS NULL"
            " ORDER BY id", (campaign_id,))
        return [Action(*row) for row in rows]

    # ----- turns -----

    async def _turns(self, conn: aiosqlite.Connection, where: str,
                     params: Sequence[Any]) -> list[Turn]:
        """Turns matching `where` (ordered by number) with their actions; caller holds the lock."""
        rows = await conn.execute_fetchall(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE {where} ORDER BY number", params)
        actions: dict[int, list[Action]] = {row[0]: [] for row in rows}
        for row in await conn.execute_fetchall(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE turn_id IN {IDS} ORDER BY id",
                (json.dumps(list(actions)),)):
            actions[row[6]].append(Action(*row))
        return [Turn(*row[:4], tuple(actions[row[0]]), row[4], row[5], None if row[6] is None else json.loads(row[6]))
                for row in rows]

    async def _settle(self, conn: aiosqlite.Connection, turn: Turn, settle: Settle | None) -> Turn:
        """The turn's markers applied to the sheets in the same transaction as the turn itself."""
        if settle is None:
            return turn
        fight = await self._fight_in(conn, turn.campaign_id)
        changed, after, effects = settle(await self._sheets_in(conn, turn.campaign_id), fight, turn.effects)
        await self._save_sheets(conn, turn.campaign_id, changed)
        if after != fight:
            await self._save_fight(conn, turn.campaign_id, after)
        await conn.execute("UPDATE turns SET effects = ? WHERE id = ?", (_json(effects), turn.id))
        return dataclasses.replace(turn, effects=effects)

    async def commit_turn(self, campaign_id: int, action_ids: Sequence[int], narration: str,
                          memories: Sequence[NewMemory] = (), shown: str | None = None,
                          context: dict | None = None, settle: Settle | None = None) -> tuple[Turn, list[Memory]]:
        """Insert the next turn, consume its pending actions, add its memories and apply its markers, atomically.

        Memories without a turn range get this turn's number; `context` is what its prompt held
        from memory. If any action is no longer pending in this campaign, nothing is saved and
        BadInput is raised.
        """
        ids = list(dict.fromkeys(int(i) for i in action_ids))
        async with self._write() as conn:
            cursor = await conn.execute(
                "INSERT INTO turns (campaign_id, number, narration, created, shown, context) SELECT ?,"
                " COALESCE(MAX(number), 0) + 1, ?, ?, ?, ? FROM turns WHERE campaign_id = ?",
                (campaign_id, narration, time.time(), shown, _json(context), campaign_id))
            turn_id = cursor.lastrowid
            cursor = await conn.execute(
                f"UPDATE actions SET turn_id = ? WHERE campaign_id = ? AND turn_id IS NULL"
                f" AND id IN {IDS}", (turn_id, campaign_id, json.dumps(ids)))
            if cursor.rowcount != len(ids):
                raise BadInput("some of these actions are not pending any more; turn not saved")
            (turn,) = await self._turns(conn, "id = ?", (turn_id,))
            turn = await self._settle(conn, turn, settle)
            added = await self._insert_memories(conn, campaign_id, memories, turn.number)
        self._memories_changed(campaign_id, added)
        return turn, added

    async def replace_narration(self, turn_id: int, narration: str, memories: Sequence[NewMemory] = (),
                                shown: str | None = None, context: dict | None = None,
                                settle: Settle | None = None) -> tuple[Turn, list[Memory]]:
        """For a retry: new narration, this turn's own exact memories swapped for new ones, its markers' effects
        taken back and the new ones applied (`settle` gets the old effects)."""
        async with self._write() as conn:
            cursor = await conn.execute("UPDATE turns SET narration = ?, shown = ?, context = ? WHERE id = ?",
                                        (narration, shown, _json(context), turn_id))
            if cursor.rowcount == 0:
                raise BadInput(f"there is no turn {turn_id}")
            (turn,) = await self._turns(conn, "id = ?", (turn_id,))
            turn = await self._settle(conn, turn, settle)
            removed = await self._delete_memories(
                conn, "campaign_id = ? AND kind = 'exact' AND turn_from = ? AND turn_to = ?",
                (turn.campaign_id, turn.number, turn.number))
            added = await self._insert_memories(conn, turn.campaign_id, memories, turn.number)
        self._memories_changed(turn.campaign_id, added, removed)
        return turn, added

    async def turn_context(self, campaign_id: int) -> tuple[int, dict] | None:
        """The last turn's number and what its prompt held from memory, when it was recorded."""
        rows = await self._rows("SELECT number, context FROM turns WHERE campaign_id = ? ORDER BY number DESC"
                                " LIMIT 1", (campaign_id,))
        if not rows or rows[0][1] is None:
            return None
        return rows[0][0], json.loads(rows[0][1])

    async def recent_turns(self, campaign_id: int, limit: int) -> list[Turn]:
        """The last `limit` turns, oldest first, with their actions."""
        async with self._lock:
            return await self._turns(
                self._conn, "campaign_id = ? AND number > (SELECT COALESCE(MAX(number), 0)"
                " FROM turns WHERE campaign_id = ?) - ?", (campaign_id, campaign_id, limit))

    async def turns_since(self, campaign_id: int, after_number: int) -> list[Turn]:
        async with self._lock:
            return await self._turns(
                self._conn, "campaign_id = ? AND number > ?", (campaign_id, after_number))

    async def turn_count(self, campaign_id: int) -> int:
        return await self._value("SELECT COUNT(*) FROM turns WHERE campaign_id = ?", (campaign_id,))

    async def last_turn(self, campaign_id: int) -> Turn | None:
        turns = await self.recent_turns(campaign_id, 1)
        return turns[0] if turns else None

    async def undo_last_turn(self, campaign_id: int, revert: Revert | None = None) -> Turn | None:
        """Remove the last turn: its actions are pending again; unpinned memories reaching it go; `revert` takes
        its markers' effects off the sheets."""
        async with self._write() as conn:
            turns = await self._turns(
                conn, "campaign_id = ? AND number = (SELECT MAX(number) FROM turns"
                " WHERE campaign_id = ?)", (campaign_id, campaign_id))
            if not turns:
                return None
            turn = turns[0]
            if revert is not None and turn.effects:
                fight = await self._fight_in(conn, campaign_id)
                changed, after = revert(await self._sheets_in(conn, campaign_id), fight, turn.effects)
                await self._save_sheets(conn, campaign_id, changed)
                if after != fight:
                    await self._save_fight(conn, campaign_id, after)
            await conn.execute("UPDATE actions SET turn_id = NULL WHERE turn_id = ?", (turn.id,))
            await conn.execute("DELETE FROM turns WHERE id = ?", (turn.id,))
            removed = await self._delete_memories(
                conn, "campaign_id = ? AND turn_to >= ? AND pinned = 0", (campaign_id, turn.number))
            await conn.execute("UPDATE campaigns SET summarised_to = MIN(summarised_to, ?) WHERE id = ?",
                               (turn.number - 1, campaign_id))
        self._memories_changed(campaign_id, (), removed)
        return turn

    async def answer_request(self, campaign_id: int, turn_id: int, index: int, author_id: int, author_name: str,
                             make: Callable[[dict], tuple[str, T]]) -> tuple[dict, T]:
        """A roll the DM asked for in the last turn, made by its player: `make(request)` rolls it and gives the
        action's text ("[rolled ...]"), which joins their pending actions; the request is marked rolled, all in
        one transaction. BadInput (nothing stored) when the turn is no longer the last, the roll is someone
        else's or was made already."""
        async with self._write() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, effects FROM turns WHERE campaign_id = ? ORDER BY number DESC LIMIT 1", (campaign_id,))
            if not rows or rows[0][0] != turn_id:
                raise BadInput("that roll was asked for at an earlier moment of the story (or its turn was undone)")
            effects = json.loads(rows[0][1] or "{}")
            requests = effects.get("requests", [])
            if index >= len(requests):
                raise BadInput("that turn was retold; its rolls changed")
            request = requests[index]
            if request["author"] != author_id:
                raise BadInput(f"this roll is {request['name']}'s to make")
            if "rolled" in request:
                raise BadInput(f"{request['name']} has made this roll already")
            text, made = make(request)
            await conn.execute(
                "INSERT INTO actions (campaign_id, author_id, author_name, text, created) VALUES (?, ?, ?, ?, ?)",
                (campaign_id, author_id, author_name, text, time.time()))
            request["rolled"] = text
            await conn.execute("UPDATE turns SET effects = ? WHERE id = ?", (json.dumps(effects), turn_id))
        return request, made

    # --- looks: appearance notes per named character, for pictures ---
    async def set_look(self, campaign_id: int, name: str, description: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO looks (campaign_id, name, description, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (campaign_id, name) DO UPDATE SET description = excluded.description,"
                " updated = excluded.updated", (campaign_id, name, description, time.time()))

    async def looks(self, campaign_id: int) -> dict[str, str]:
        rows = await self._rows("SELECT name, description FROM looks WHERE campaign_id = ? ORDER BY name",
                                (campaign_id,))
        return {name: description for name, description in rows}

    # --- glossary: names and terms that translation keeps the same both ways ---
    async def set_term(self, campaign_id: int, source: str, target: str, *, auto: bool = False) -> None:
        """Add or change an entry; an automatic one (a player's name) never overwrites another."""
        same = [s for s in await self.glossary(campaign_id) if s.casefold() == source.casefold()]
        if auto and same:
            return
        async with self._write() as conn:
            await conn.executemany("DELETE FROM glossary WHERE campaign_id = ? AND source = ?",
                                   [(campaign_id, s) for s in same])
            await conn.execute(  # two messages of one new player at once: the second one finds the first
                "INSERT INTO glossary (campaign_id, source, target, auto) VALUES (?, ?, ?, ?) ON CONFLICT"
                f" (campaign_id, source) DO {'NOTHING' if auto else 'UPDATE SET target = excluded.target, auto = 0'}",
                (campaign_id, source, target, int(auto)))

    async def remove_term(self, campaign_id: int, source: str) -> bool:
        # SQLite's NOCASE folds ASCII only: "брам" must still find "Брам".
        same = [s for s in await self.glossary(campaign_id) if s.casefold() == source.casefold()]
        async with self._write() as conn:
            cursor = await conn.executemany("DELETE FROM glossary WHERE campaign_id = ? AND source = ?",
                                            [(campaign_id, s) for s in same])
        return bool(same) and cursor.rowcount != 0

    async def glossary(self, campaign_id: int) -> dict[str, str]:
        rows = await self._rows("SELECT source, target FROM glossary WHERE campaign_id = ? ORDER BY source",
                                (campaign_id,))
        return {source: target for source, target in rows}
