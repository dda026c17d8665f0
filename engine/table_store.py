"""The store's tables about the table itself rather than the story: who plays in the rounds.

A mixin of Store (engine/store.py), which holds the connection, the lock and the transactions.
"""
from __future__ import annotations

import time


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
