"""/dm glossary: names and terms translation keeps the same both ways (players' names join by themselves)."""
from __future__ import annotations

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import begin, reply, whole_lines


def shown(text: str) -> str:
    return discord.utils.escape_markdown(text)


class GlossaryCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="glossary", description="Names and terms kept the same when translating")
        self.services = services

    @app_commands.command(description="Keep a name or term as given, both ways (e.g. Брам → Bram)")
    @app_commands.describe(source="As the players write it", target="As the DM's model should read it")
    async def add(self, interaction: discord.Interaction, source: str, target: str) -> None:
        campaign = await begin(interaction, self.services)
        source, target = await self.services.edits.add_term(campaign, source, target)
        await reply(interaction, f"📖 **{shown(source)}** ↔ **{shown(target)}**")

    @app_commands.command(description="Remove a glossary entry")
    @app_commands.describe(source="The entry as the players write it")
    async def remove(self, interaction: discord.Interaction, source: str) -> None:
        campaign = await begin(interaction, self.services)
        await self.services.edits.remove_term(campaign, source)
        await reply(interaction, f"🗑️ **{shown(source)}** left the glossary.")

    @app_commands.command(description="List this campaign's glossary")
    async def show(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services)
        glossary = await self.services.store.glossary(campaign.id)
        lines = [f"• {shown(s)} ↔ {shown(t)}" if s != t else f"• {shown(s)} (kept as it is)"
                 for s, t in glossary.items()]
        text = "\n".join(["**Glossary**", *lines]) if lines else "The glossary is empty."
        await reply(interaction, whole_lines(text))
