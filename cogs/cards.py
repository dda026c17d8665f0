"""/dm card: story cards, lore the DM is given when one of its keys is mentioned (admins add and remove)."""
from __future__ import annotations

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import begin, reply, shorten, whole_lines
from engine.records import Card


def card_line(card: Card) -> str:
    keys = ", ".join(card.keys)
    text = card.written if card.written == card.text else f"{card.written} (DM reads: {card.text})"
    return f"🗂️ `#{card.id}` **{shorten(discord.utils.escape_markdown(keys), 120)}**: " \
           f"{shorten(discord.utils.escape_markdown(text), 300)}"


class CardCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="card", description="Story cards: lore the DM gets when its keys are mentioned")
        self.services = services

    @app_commands.command(description="Add a story card (admins)")
    @app_commands.describe(keys="Words or names that bring it up, separated by commas",
                           text="What the DM should know, e.g. 'Mirelda runs the inn and owes the guild'")
    async def add(self, interaction: discord.Interaction, keys: str, text: str) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        card, note = await self.services.edits.add_card(campaign, keys, text)
        await reply(interaction, f"🗂️ Card added; it enters the prompt when a key is mentioned.\n"
                                 f"{card_line(card)}" + (f"\n-# {note}" if note else ""))

    @app_commands.command(description="List this campaign's story cards")
    async def list(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services)
        cards = await self.services.store.cards(campaign.id)
        lines = [card_line(c) for c in cards]
        text = "\n".join([f"**Story cards** ({len(cards)})", *lines]) if lines else \
            "No story cards yet: an admin adds one with `/dm card add`."
        await reply(interaction, whole_lines(text))

    @app_commands.command(description="Remove a story card (admins)")
    @app_commands.describe(card_id="The card's number, as /dm card list shows it")
    async def remove(self, interaction: discord.Interaction, card_id: int) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        await self.services.edits.remove_card(campaign, card_id)
        await reply(interaction, f"🗑️ Card #{card_id} removed.")
