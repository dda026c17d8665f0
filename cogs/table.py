"""Players' messages in a campaign channel become pending actions, stored before they are marked."""
from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.services import Services
from cogs.errors import NO_PINGS
from engine.errors import EngineError

log = logging.getLogger(__name__)
STORED = "✍️"
CUT = "✂️"
PLAYER_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class Table(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        self.prefixes = tuple(services.config.discord.ooc_prefixes)

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
            _, note = await self.services.narrator.add_action(
                campaign.id, message.author.id, message.author.display_name, text)
        except EngineError as exc:
            log.info("action from %s not stored: %s", message.author, exc)
            return
        try:  # the action is safe in the database; a failed reaction loses nothing
            await message.add_reaction(STORED)
            if note:
                await message.add_reaction(CUT)
                await message.reply(f"-# {note}.", mention_author=False, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("could not mark a stored action: %s", exc)
