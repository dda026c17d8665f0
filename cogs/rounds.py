"""Rounds on Discord: the keeper's own narrations go into the campaign's channel, and one short note per
round says who it waits for (edited as players act, closed when the round is narrated)."""
from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord.ext import commands

from bot.services import Services
from cogs.combat import tracker_follows
from cogs.errors import friendly
from cogs.render import StreamTarget, narrate
from engine.errors import EngineError
from engine.jobs import Job
from engine.records import Campaign
from engine.table.rounds import RoundKeeper, RoundState

log = logging.getLogger(__name__)


def countdown(left: float) -> str:
    """A Discord timestamp: every client shows it as a live "in 2 minutes"."""
    return f"<t:{int(time.time() + left)}:R>"


class RoundDesk(commands.Cog):
    """The bot's one round keeper (a cog of its own, shared by the /dm commands and the Table cog),
    with the notes it shows in the campaigns' channels."""

    def __init__(self, services: Services, client: discord.Client) -> None:
        self.services, self.client = services, client
        # `python -m bot sync` loads the cogs for their commands alone, with no services: this keeper never runs
        self.keeper = RoundKeeper(services.store if services is not None else None,  # type: ignore[arg-type]
                                  lambda c: services.narrator.campaign_settings(c).rounds, self._narrate, self._show)
        self._notes: dict[int, tuple[discord.Message, int]] = {}  # campaign id -> (its note, round number)

    async def _channel(self, campaign: Campaign) -> discord.abc.Messageable:
        channel = self.client.get_channel(campaign.channel_id)
        return channel if channel is not None else await self.client.fetch_channel(campaign.channel_id)  # type: ignore[return-value]

    async def _narrate(self, campaign: Campaign, why: str) -> bool:
        channel = await self._channel(campaign)
        try:
            handle = self.services.runner.submit(Job(campaign.id, campaign.channel_id, "turn"))
        except EngineError as exc:  # the queue is full: the round's actions stay pending
            await channel.send(f"{friendly(exc)} The round's actions wait for `/dm continue`.")
            return False
        return await narrate(StreamTarget(None, channel), handle, note=f"🎲 {why}",
                      on_fight=tracker_follows(self.services, channel, campaign))

    async def _show(self, campaign: Campaign, state: RoundState | None) -> None:
        note = self._notes.get(campaign.id)
        try:
            if state is None:  # the round is being narrated: the note says so and stays as it is
                if note is not None:
                    del self._notes[campaign.id]
                    await note[0].edit(content=f"-# 🎲 Round {note[1]}: the DM narrates.")
                return
            text = f"-# 🎲 {discord.utils.escape_markdown(state.line(asyncio.get_running_loop().time(), countdown))}"
            if note is not None and note[1] == state.number:
                if note[0].content != text:
                    self._notes[campaign.id] = (await note[0].edit(content=text), state.number)
                return
            message = await (await self._channel(campaign)).send(text)
            self._notes[campaign.id] = (message, state.number)
        except discord.HTTPException as exc:  # a note is a courtesy: the round goes on without it
            log.warning("round note for campaign %d not shown: %s", campaign.id, exc)

    async def resume(self) -> None:
        """After a restart: rounds with actions pending start their timers again."""
        for campaign in await self.services.store.list_campaigns():
            if campaign.active:
                await self.keeper.check(campaign.id)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        await self.resume()

    async def cog_unload(self) -> None:
        await self.keeper.close()


async def round_desk(bot: commands.Bot) -> RoundDesk:
    """The bot's RoundDesk: the extensions that need it share this one (loaded first if it is not yet).
    (An extension's module is executed anew when it loads, so the cog is found by name, not by class.)"""
    if __name__ not in bot.extensions:
        await bot.load_extension(__name__)
    desk = bot.get_cog(RoundDesk.__cog_name__)
    assert desk is not None, "the cogs.rounds extension adds its RoundDesk"
    return desk  # type: ignore[return-value]


async def setup(bot: commands.Bot) -> None:
    """The extension: the RoundDesk over the bot's services."""
    await bot.add_cog(RoundDesk(bot.services, bot))  # type: ignore[attr-defined]
