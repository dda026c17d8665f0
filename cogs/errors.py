"""Engine errors as short, friendly messages; everything else is logged and gets a plain apology."""
from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import MESSAGE_LIMIT, NotAllowed, reply, shorten
from engine.errors import (BadInput, Busy, Cancelled, EngineError, PicturesUnavailable, TranslatorUnavailable,
                           Unavailable)

log = logging.getLogger(__name__)
MESSAGE_MAX = MESSAGE_LIMIT // 2  # an error message is a line or two, whatever the error echoes
SORRY = "Something went wrong on my side; the server owner can find the details in the bot's log."


def friendly(error: BaseException) -> str:
    """The message a user reads, short whatever the error echoes (a 2,000-character value, say)."""
    return shorten(_friendly(error), MESSAGE_MAX)


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


async def tell(interaction: discord.Interaction, text: str) -> None:
    """Answer an interaction, only to who asked, whether or not it was deferred or answered already."""
    try:
        await reply(interaction, shorten(text))
    except discord.HTTPException:
        log.warning("could not tell %s: %s", interaction.user, text)


async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """The tree-level handler: expected errors get their message, the rest a traceback in the log."""
    original = getattr(error, "original", error)
    if not isinstance(original, (EngineError, app_commands.CheckFailure)):
        log.error("command %s failed", getattr(interaction.command, "qualified_name", "?"), exc_info=original)
    await tell(interaction, friendly(error))


async def setup(bot: commands.Bot) -> None:
    """The extension: this module's handler answers every slash command that fails."""
    bot.tree.on_error = on_tree_error  # type: ignore[method-assign]
