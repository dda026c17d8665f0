"""/dm sheet, /dm inventory (items and gold) and /dm hp: character sheets, one per player per campaign.

Your own sheet; admins may name anyone's. Every change goes through the engine (engine/game/sheets.py via
CampaignEdits.change_sheet), which refuses what does not fit before anything is stored.
"""
from __future__ import annotations

import io

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import begin, reply, require_admin, shorten
from engine.errors import BadInput
from engine.game import Sheet, sheet_from_json
from engine.game.sheets import FIELDS
from engine.records import Campaign

IMPORT_MAX_BYTES = 64 * 1024


def sheet_embed(sheet: Sheet) -> discord.Embed:
    """A sheet as an embed: the party line the DM reads, then abilities, skills, inventory and notes."""
    esc = discord.utils.escape_markdown
    embed = discord.Embed(title=f"📜 {shorten(sheet.name, 250)}", description=shorten(esc(sheet.party_line()), 4000))
    embed.add_field(name="Abilities", value=" · ".join(
        f"{a.upper()} {sheet.scores[a]} ({sheet.modifier(a):+d})" for a in sheet.scores) + f"\nProficiency +{sheet.prof}",
        inline=False)
    if sheet.skills:
        mods = sheet.modifiers()
        embed.add_field(name="Skills", value=", ".join(f"{s} {mods[s]:+d}" for s in sheet.skills), inline=False)
    if sheet.inventory:
        embed.add_field(name="Inventory", value=shorten(esc(", ".join(
            f"{qty} {item}" if qty > 1 else item for item, qty in sheet.inventory.items())), 1024), inline=False)
    if sheet.notes:
        embed.add_field(name="Notes", value=shorten(esc(sheet.notes), 1024), inline=False)
    return embed


def whose(interaction: discord.Interaction, services: Services, player: discord.Member | None) -> discord.abc.User:
    """The sheet's owner: who asked, or (admins only) the player they name."""
    if player is not None and player.id != interaction.user.id:
        require_admin(interaction, services)
        return player
    return interaction.user


async def change(interaction: discord.Interaction, services: Services, player: discord.Member | None,
                 how, *, public: bool = True) -> None:
    """Change the owner's sheet with `how(sheet) -> (sheet, said)` and say what changed. The change is
    tried on the sheet as it stands before the answer goes public, so a refusal (not an admin, a value
    that does not fit, an item nobody has) is seen only by who asked; then it is made under the lock."""
    owner = player or interaction.user
    here = await services.store.campaign_for_channel(interaction.channel_id or 0)
    current = await services.edits.sheet(here, owner.id) if here else None

    def check() -> None:
        whose(interaction, services, player)
        how(current or Sheet(name=owner.display_name))

    campaign: Campaign = await begin(interaction, services, public=public, check=check)
    _, said = await services.edits.change_sheet(campaign, owner.id, owner.display_name, how)
    await reply(interaction, f"📜 {discord.utils.escape_markdown(said)}", public=public)


change_sheet = change  # the gold command's option is called `change` too


class SheetCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="sheet", description="Character sheets: one per player per campaign")
        self.services = services

    @app_commands.command(description="Show a character sheet (yours, or a player's)")
    async def show(self, interaction: discord.Interaction, player: discord.Member | None = None) -> None:
        campaign = await begin(interaction, self.services)
        owner = player or interaction.user
        sheet = await self.services.edits.sheet(campaign, owner.id)
        if sheet is None:
            await reply(interaction, f"{discord.utils.escape_markdown(owner.display_name)} has no sheet yet: "
                                     "`/dm sheet set` starts one.")
            return
        await interaction.followup.send(embed=sheet_embed(sheet), ephemeral=True)

    @app_commands.command(description="Set a field of your sheet (admins: anyone's)")
    @app_commands.describe(field="e.g. hp, max_hp, ac, dex, class, skills, conditions, notes",
                           value="e.g. 14, ranger, 'stealth, perception'", player="Admins: this player's sheet")
    @app_commands.choices(field=[app_commands.Choice(name=f, value=f) for f in FIELDS])
    async def set(self, interaction: discord.Interaction, field: str, value: str,
                  player: discord.Member | None = None) -> None:
        await change(interaction, self.services, player,
                     lambda sheet: (sheet.with_field(field, value), f"{field} set."), public=False)

    @app_commands.command(description="Your sheet as a JSON file")
    async def export(self, interaction: discord.Interaction, player: discord.Member | None = None) -> None:
        campaign = await begin(interaction, self.services)
        owner = player or interaction.user
        sheet = await self.services.edits.sheet(campaign, owner.id)
        if sheet is None:
            raise BadInput(f"{owner.display_name} has no sheet yet")
        file = discord.File(io.BytesIO(sheet.to_json().encode()), filename=f"sheet-{owner.id}.json")
        await interaction.followup.send(f"📜 {discord.utils.escape_markdown(sheet.name)}'s sheet", file=file,
                                        ephemeral=True)

    @app_commands.command(name="import", description="Replace your sheet with a JSON file from /dm sheet export")
    async def import_(self, interaction: discord.Interaction, file: discord.Attachment,
                      player: discord.Member | None = None) -> None:
        campaign = await begin(interaction, self.services)
        owner = whose(interaction, self.services, player)
        if file.size > IMPORT_MAX_BYTES:
            raise BadInput(f"a sheet's file may be at most {IMPORT_MAX_BYTES // 1024} KB")
        imported = sheet_from_json((await file.read()).decode("utf-8", errors="replace"))  # checked first
        await self.services.edits.change_sheet(campaign, owner.id, owner.display_name, lambda sheet: (imported, ""))
        await reply(interaction, f"📜 {discord.utils.escape_markdown(imported.name)}'s sheet imported.")


class InventoryCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="inventory", description="Items and gold on your sheet, changed by quantities")
        self.services = services

    @app_commands.command(description="Add items to your sheet (admins: anyone's)")
    async def add(self, interaction: discord.Interaction, item: str, quantity: app_commands.Range[int, 1, 100000] = 1,
                  player: discord.Member | None = None) -> None:
        await change(interaction, self.services, player, lambda sheet: sheet.with_item(item, quantity))

    @app_commands.command(description="Change your character's gold: +10 or -3 (admins: anyone's)")
    async def gold(self, interaction: discord.Interaction, change: app_commands.Range[int, -1000000000, 1000000000],
                   player: discord.Member | None = None) -> None:
        await change_sheet(interaction, self.services, player, lambda sheet: sheet.with_gold(change))

    @app_commands.command(description="Remove items from your sheet (admins: anyone's)")
    async def remove(self, interaction: discord.Interaction, item: str,
                     quantity: app_commands.Range[int, 1, 100000] = 1, player: discord.Member | None = None) -> None:
        await change(interaction, self.services, player, lambda sheet: sheet.with_item(item, -quantity))
