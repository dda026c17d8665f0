"""Nothing the bot writes pings anyone, even where a command forgets to say so: the cogs pass no
allowed_mentions, and the bot's default (AllowedMentions.none(), bot/app.py) goes with every message.

A throwaway cog sends `@everyone`, a user mention and a role mention every way the cogs send and edit
messages, saying nothing about mentions; SimCord records each REST payload and works out who each
message pinged. The control test takes the bot's default away and sees the same calls ping.
"""
from __future__ import annotations

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord_world import World
from test_discord import bot_config, make_bot, model, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.simcord(settle_timeout=120)
# Every way the cogs send or edit a message (cogs/common.py, render.py, rounds.py, table.py, memory.py):
# (method, first part of the REST path)
PATHS = {
    ("POST", "interactions"),  # response.send_message, response.edit_message (a callback)
    ("PATCH", "webhooks"),  # edit_original_response
    ("POST", "webhooks"),  # followup.send
    ("POST", "channels"),  # channel.send, message.reply
    ("PATCH", "channels"),  # message.edit
}


class Loud(commands.Cog):
    """Sends and edits `content` the ways the cogs do, never passing allowed_mentions."""

    def __init__(self) -> None:
        self.content = ""

    @app_commands.command(name="loud", description="Mentions everyone, every way")
    async def loud(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(self.content, view=LoudButton(self))
        await interaction.edit_original_response(content=f"{self.content} (edited)")
        await interaction.followup.send(self.content)
        message = await interaction.channel.send(self.content)  # type: ignore[union-attr]
        await message.edit(content=f"{self.content} (edited)")
        await message.reply(self.content)

    @app_commands.command(name="loud-later", description="Mentions everyone after a defer")
    async def loud_later(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send(self.content)
        await interaction.edit_original_response(content=f"{self.content} (edited)")


class LoudButton(discord.ui.View):
    def __init__(self, cog: Loud) -> None:
        super().__init__(timeout=60)
        self.cog = cog

    @discord.ui.button(label="Again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"{self.cog.content} (clicked)", view=None)


@pytest.fixture
async def simcord_bot(make_bot):  # noqa: F811 (test_discord's bot, with the throwaway cog)
    bot = make_bot()
    await bot.add_cog(Loud())
    return bot


async def shout(world: World) -> tuple[list, list]:
    """Runs every path with a loud message; returns the bot's message payloads and its stored messages."""
    heroes = world.guild.create_role("Heroes", mentionable=True)
    world.env.bot.get_cog("Loud").content = f"@everyone @here <@{world.bob.id}> <@&{heroes.id}> wake up"
    start = len(world.requests)
    shown = await world.slash(world.alice, world.table, "loud")
    await world.click(world.alice, shown.response, "Again")
    await world.slash(world.alice, world.table, "loud-later")
    payloads = []
    for _, entry in world.requests.since(start):
        body = entry.json or {}
        body = (body.get("data") or {}) if "type" in body else body  # a callback nests its message
        if "content" in body:
            payloads.append((entry.method, entry.path, body))
    messages = [m for m in world.env.backend.messages[world.table.id].values() if "wake up" in m.content]
    return payloads, messages


def pinged(message) -> bool:
    return bool(message.ping_user_ids or message.ping_role_ids or message.mention_everyone)


async def test_a_message_that_says_nothing_of_mentions_pings_nobody(world):
    payloads, messages = await shout(world)
    assert {(method, path.split("/")[1]) for method, path, _ in payloads} == PATHS  # every path was taken
    for method, path, body in payloads:
        assert body.get("allowed_mentions") == {"parse": []}, (method, path, body)
    assert len(messages) >= 4 and not [m.content for m in messages if pinged(m)]


async def test_without_the_bots_default_the_same_calls_ping(world):
    """The control: the check above sees pings when the default is gone (so it can fail)."""
    world.env.bot.allowed_mentions = None  # as if bot/app.py gave no default
    payloads, messages = await shout(world)
    assert payloads and all("allowed_mentions" not in body for _, _, body in payloads), payloads
    assert any(world.bob.id in m.ping_user_ids for m in messages)
    assert any(m.ping_role_ids for m in messages)
