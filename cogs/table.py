"""Players' messages in a campaign channel become pending actions, stored before they are marked."""
from __future__ import annotations

import contextlib
import logging

import discord
from discord.ext import commands

from bot.services import Services
from cogs.rounds import RoundDesk, round_desk
from engine.errors import EngineError, Unavailable

log = logging.getLogger(__name__)
STORED = "✍️"
CUT = "✂️"
NOT_STORED = "⚠️"
PLAYER_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class Table(commands.Cog):
    """Players' messages in a campaign channel: stored as pending actions, edited and withdrawn with them."""

    def __init__(self, services: Services, rounds: RoundDesk) -> None:
        self.services, self.rounds = services, rounds

    @property
    def prefixes(self) -> tuple[str, ...]:  # read when used: `python -m bot sync` loads this cog with no services
        return tuple(self.services.config.discord.ooc_prefixes)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or message.webhook_id is not None:
            return
        if message.type not in PLAYER_MESSAGE_TYPES:  # "X started a thread: <name>", pins, joins...
            return
        text = message.clean_content.strip()  # mentions become plain @names: the model never sees ids
        if not text or text.startswith(self.prefixes):
            return
        campaign = await self.services.store.campaign_for_channel(message.channel.id)
        if campaign is None:
            return
        try:
            _, note = await self.services.edits.add_action(
                campaign.id, message.author.id, message.author.display_name, text, message.id)
        except Unavailable as exc:  # the database is busy: the player must know to send it again
            log.warning("action from %s not stored: %s", message.author, exc)
            with contextlib.suppress(discord.HTTPException):
                await message.add_reaction(NOT_STORED)
                await message.reply(f"-# {NOT_STORED} not stored: {exc}.", mention_author=False)
            return
        except EngineError as exc:  # empty or invisible: nothing to tell
            log.info("action from %s not stored: %s", message.author, exc)
            return
        try:  # the action is safe in the database; a failed reaction loses nothing
            await message.add_reaction(STORED)
            if note:
                await message.add_reaction(CUT)
                await message.reply(f"-# {note}.", mention_author=False)
        except discord.HTTPException as exc:
            log.warning("could not mark a stored action: %s", exc)
        await self.rounds.keeper.check(campaign.id)  # the round may be complete now

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message takes its pending action with it (one narrated already stays in the story)."""
        withdrawn = await self.services.edits.withdraw_action(message_id=payload.message_id)
        if withdrawn is not None:
            log.info("action %d withdrawn: its message was deleted", withdrawn.id)
            await self.rounds.keeper.check(withdrawn.campaign_id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message changes its pending action (an edit to nothing, or out of character,
        withdraws it)."""
        message = payload.message
        if message.author.bot or "content" not in payload.data:  # an embed appearing is no edit
            return
        text = message.clean_content.strip()
        if text.startswith(self.prefixes):
            text = ""
        try:
            action, note = await self.services.edits.edit_action(message.id, text)
        except EngineError as exc:
            log.info("edit of message %d not taken: %s", message.id, exc)
            return
        if action is not None and note:
            try:
                await message.add_reaction(CUT)
            except discord.HTTPException as exc:
                log.warning("could not mark a cut action: %s", exc)
        if action is not None:  # an edit to nothing withdrew it: the round may wait for that player again
            await self.rounds.keeper.check(action.campaign_id)


async def setup(bot: commands.Bot) -> None:
    """The extension: players' messages, over the bot's services and its one RoundDesk."""
    await bot.add_cog(Table(bot.services, await round_desk(bot)))  # type: ignore[attr-defined]
