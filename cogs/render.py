"""Streaming narration into Discord: at most one edit a second, split at the message limit,
a visible "still writing" mark, and no mention in generated text ever pings anyone."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Awaitable, Callable

import discord

from cogs.common import MESSAGE_LIMIT, shorten
from cogs.errors import friendly
from cogs.roll_requests import effect_lines, requests_message
from engine.errors import EngineError
from engine.jobs import JobHandle
from engine.records import Turn
from engine.table import defuse_mentions

log = logging.getLogger(__name__)
LIMIT = MESSAGE_LIMIT
WRITING = "\n-# ✍️ the DM is writing…"
TOKEN_LIFETIME_S = 14.5 * 60  # interaction tokens last 15 minutes; keep a margin
NOT_SAVED = "This was not saved; the actions wait for the next `/dm continue`."


def split_point(text: str, limit: int) -> int:
    """Where to cut `text` so the first part fits `limit`: a paragraph, line, sentence or word end."""
    if len(text) <= limit:
        return len(text)
    window = text[:limit]
    for mark in ("\n\n", "\n", ". ", "! ", "? ", " "):
        cut = window.rfind(mark)
        if cut > limit // 2:
            return cut + len(mark)
    return limit


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    parts = []
    while len(text) > limit:
        cut = split_point(text, limit)
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return parts + [text] if text or not parts else parts


class StreamTarget:
    """Where a reply goes: the interaction's own reply first, ordinary channel messages after.

    Past the interaction token's lifetime the reply can no longer be edited, so the text moves
    to a channel message: a turn that waited a long time still arrives. Without an interaction (a
    round the DM narrates by itself) every message is a channel message.
    """

    def __init__(self, interaction: discord.Interaction | None, channel: discord.abc.Messageable | None = None) -> None:
        self.interaction = interaction
        self.channel = channel if channel is not None else interaction.channel  # type: ignore[union-attr]
        self.started = time.monotonic()
        self.messages: list[discord.Message | None] = [None]  # None: the interaction's reply (when there is one)

    def token_alive(self) -> bool:
        return self.interaction is not None and time.monotonic() - self.started < TOKEN_LIFETIME_S

    async def show(self, index: int, content: str, **extra) -> None:
        """Put `content` into message `index` (extra: view=, attachments= as for an edit)."""
        content = content or "…"
        if index == len(self.messages):
            self.messages.append(await self._send(content, extra))
            return
        message = self.messages[index]
        if message is None and self.token_alive():
            try:
                await self.interaction.edit_original_response(content=content, **extra)  # type: ignore[union-attr]
                return
            except discord.HTTPException as exc:  # the token expired, the reply was deleted, Discord failed
                # Whatever the reason, the text must still reach the table: it moves to the channel.
                log.warning("could not edit the interaction's reply (%s); posting in the channel", exc)
        if message is None:
            self.messages[index] = await self._send(content, extra)
        else:
            await message.edit(content=content, **extra)

    async def _send(self, content: str, extra: dict) -> discord.Message:
        options = {key: value for key, value in extra.items() if value is not None}
        if "attachments" in options:  # a new message takes files, an edit takes attachments
            options["files"] = options.pop("attachments")
        return await self.channel.send(content, **options)  # type: ignore[union-attr]


class NarrationStream:
    """A growing text shown across messages: edits at most every `interval` seconds, full messages
    frozen and the rest continued in the next one, a "writing" mark until `finish`."""

    def __init__(self, show: Callable[[int, str], Awaitable[None]], *, interval: float = 1.0,
                 limit: int = LIMIT) -> None:
        self._show, self.interval = show, interval
        self.chunk = limit - len(WRITING)  # the same cuts while writing and when done
        self._shown: dict[int, str] = {}
        self._last = -interval

    async def _put(self, index: int, content: str) -> None:
        if self._shown.get(index) != content:
            await self._show(index, content)
            self._shown[index] = content

    async def update(self, text: str) -> None:
        if time.monotonic() - self._last < self.interval or not text.strip():
            return
        parts = split_message(defuse_mentions(text), self.chunk)
        for index, part in enumerate(parts):
            await self._put(index, part + (WRITING if index == len(parts) - 1 else ""))
        self._last = time.monotonic()

    async def finish(self, text: str, note: str = "") -> None:
        parts = split_message(defuse_mentions(text), self.chunk)
        if note:
            note_line = f"\n-# {shorten(note, LIMIT // 2)}"
            if len(parts[-1]) + len(note_line) <= LIMIT:
                parts[-1] += note_line
            else:  # a last part near the limit: the note goes on in a message of its own
                parts.append(note_line.lstrip("\n"))
        for index, part in enumerate(parts):
            await self._put(index, part)
        for index in range(len(parts), len(self._shown)):  # the final text came out shorter
            await self._put(index, "-# …")


async def narrate(target: StreamTarget, handle: JobHandle, note: str = "",
                  on_fight: Callable[[Turn], Awaitable[None]] | None = None) -> bool:
    """A turn job into Discord: its place in the queue while it waits, the narration as it streams
    (as the engine shows it: translated sentence by sentence where the campaign needs it), then the
    saved turn with its notes. False when the turn failed (the table was told why)."""
    stream = NarrationStream(target.show)
    while not handle.started and not handle.done:  # let the players see the queue move
        position = handle.position()
        await target.show(0, f"⏳ Waiting for the DM: {position} ahead of this one.")
        await handle.moved(position)
    shown = ""
    try:
        async for shown in handle.updates():  # what the table is shown: the engine translates it
            await stream.update(shown)
        result = await handle.result()
    except Exception as exc:  # the reply must never stay "writing"; unexpected errors still reach the log
        told = shown.strip()
        with contextlib.suppress(discord.HTTPException):
            await stream.finish(told or friendly(exc), note=f"{friendly(exc)} {NOT_SAVED}" if told else "")
        if not isinstance(exc, EngineError):
            raise
        return False
    notes = [*result.notes, f"{note} · turn {result.turn.number}" if note else ""]
    changes = effect_lines(result.turn)  # what the DM's markers did to the characters, under the story
    await stream.finish(result.turn.posted + (f"\n\n{changes}" if changes else ""),
                        note="\n-# ".join(n for n in notes if n))
    if (asked := requests_message(result.turn)) is not None:  # the rolls the DM asked for, with their buttons
        await target.show(len(target.messages), asked[0], view=asked[1])
    if on_fight is not None and "fight_before" in (result.turn.effects or {}):  # the fight moved on: its tracker too
        await on_fight(result.turn)
    return True
