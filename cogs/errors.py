"""Engine errors as short, friendly messages; everything else is logged and gets a plain apology."""
from __future__ import annotations

import logging

import discord
from discord import app_commands

from engine.errors import (BadInput, Busy, Cancelled, EngineError, PicturesUnavailable, TranslatorUnavailable,
                           Unavailable)

log = logging.getLogger(__name__)
NO_PINGS = discord.AllowedMentions.none()
MESSAGE_MAX = 1000  # an error message is a line or two; Discord refuses any message past 2,000 characters
SORRY = "Something went wrong on my side; the server owner can find the details in the bot's log."


class NotAllowed(app_commands.CheckFailure):
    """The member lacks the permission the bot itself checks."""


def friendly(error: BaseException) -> str:
    """The message a user reads, short whatever the error echoes (a 2,000-character value, say)."""
    text = _friendly(error)
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _friendly(error: BaseException) -> str:
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, NotAllowed):
        return str(error)
    if isinstance(error, Busy):
        return f"⏳ {error} (queue: {error.queue_length})."
    if isinstance(error, PicturesUnavailable):
        return f"🎨 No picture this time: {error}."
    if isinstance(error, TranslatorUnavailable):
        return f"🌐 No translation this time: {error}."
    if isinstance(error, Unavailable):
        return f"😴 The Dungeon Master cannot answer right now: {error}."
    if isinstance(error, Cancelled):
        return "✋ That was cancelled."
    if isinstance(error, (BadInput, EngineError)):
        return f"⚠️ {str(error)[:1].upper()}{str(error)[1:]}."
    if isinstance(error, app_commands.CheckFailure):
        return "🔒 You cannot use this command here."
    return SORRY


async def tell(interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
    """Answer an interaction whether or not it was deferred or answered already."""
    text = text if len(text) <= 2000 else text[:1999] + "…"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=ephemeral, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(text, ephemeral=ephemeral, allowed_mentions=NO_PINGS)
    except discord.HTTPException:
        log.warning("could not tell %s: %s", interaction.user, text)


async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """The tree-level handler: expected errors get their message, the rest a traceback in the log."""
    original = getattr(error, "original", error)
    if not isinstance(original, (EngineError, app_commands.CheckFailure)):
        log.error("command %s failed", getattr(interaction.command, "qualified_name", "?"), exc_info=original)
    await tell(interaction, friendly(error))
