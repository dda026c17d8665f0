"""create_bot: the Discord bot, its services built from the config in setup_hook (before it connects),
then its cogs loaded as extensions, by name."""
from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.config import Config
from bot.services import Services, build_services

log = logging.getLogger(__name__)
# The default of every message the bot sends or edits (discord.py merges it into each call): nothing
# it writes pings anyone, whether or not a cog says so.
NO_PINGS = discord.AllowedMentions.none()
# Loaded in this order; cogs.rounds first, as both /dm and the table share its RoundDesk.
EXTENSIONS = ("cogs.errors", "cogs.rounds", "cogs.dm", "cogs.table", "cogs.owner")

# Exactly what the bot does: read and write in channels and threads, react, attach pictures, pin a fight's tracker.
PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True,
    add_reactions=True, attach_files=True, embed_links=True, pin_messages=True,  # pin: a fight's tracker
)


def invite_url(client_id: int) -> str:
    return discord.utils.oauth_url(client_id, permissions=PERMISSIONS, scopes=("bot", "applications.commands"))


class DungeonMasterBot(commands.Bot):
    def __init__(self, config: Config, *, load_services: bool = True, client_options: dict | None = None,
                 **models) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # players' actions are ordinary messages
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, allowed_mentions=NO_PINGS,
                         help_command=None, **(client_options or {}))
        self.config, self._load_services, self._models = config, load_services, models
        self.services: Services | None = None
        self._invite_logged = False

    async def setup_hook(self) -> None:
        if self._load_services:
            self.services = await build_services(self.config, log.info, **self._models)
        for name in EXTENSIONS:  # each reads self.services
            await self.load_extension(name)
        guild_id = self.config.discord.dev_guild_id
        if guild_id and self._load_services:  # a development server gets new commands at once
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        if not self._invite_logged and self.user is not None:
            self._invite_logged = True
            log.info("logged in as %s; invite it with %s", self.user, invite_url(self.user.id))

    async def close(self) -> None:
        await super().close()
        if self.services is not None:
            services, self.services = self.services, None
            await services.close()


class ShardedDungeonMasterBot(DungeonMasterBot, commands.AutoShardedBot):
    """The same bot over several gateway connections (discord.py's AutoShardedBot): Discord requires
    shards past 2,500 servers, and they spread the gateway's events over more connections before that."""


def create_bot(config: Config, **models) -> commands.Bot:
    """The real bot; tests may hand in models they loaded already (text_model=..., embed_model=...).
    With discord.shards = "auto" Discord says how many shards; a number fixes it."""
    shards = config.discord.shards
    if shards == "off":
        return DungeonMasterBot(config, **models)
    count = None if shards == "auto" else int(shards)
    return ShardedDungeonMasterBot(config, client_options={"shard_count": count}, **models)
