"""What several cogs need: the campaign of this channel and the bot's own admin check."""
from __future__ import annotations

import discord

from bot.services import Services
from cogs.errors import NotAllowed
from engine.errors import BadInput
from engine.records import Campaign


def shorten(text: str, limit: int) -> str:
    """Text within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole_lines(text: str, limit: int = 1900) -> str:
    """A list within `limit` characters, cut after its last whole line, an ellipsis line marking the cut."""
    return text if len(text) <= limit else text[:limit].rsplit("\n", 1)[0] + "\n…"


def is_admin(interaction: discord.Interaction, admin_role: str) -> bool:
    """Manage Server, or the configured admin role: checked by the bot, not only by Discord."""
    member = interaction.user
    if not isinstance(member, discord.Member):
        return False
    if member.guild_permissions.manage_guild:
        return True
    return bool(admin_role) and any(role.name == admin_role for role in member.roles)


def require_admin(interaction: discord.Interaction, admin_role: str) -> None:
    if not is_admin(interaction, admin_role):
        role = f" or the {admin_role} role" if admin_role else ""
        raise NotAllowed(f"🔒 Only members with Manage Server{role} can do that.")


async def campaign_here(services: Services, interaction: discord.Interaction) -> Campaign:
    campaign = await services.store.campaign_for_channel(interaction.channel_id or 0)
    if campaign is None:
        raise BadInput("there is no campaign in this channel; start one with /dm start")
    return campaign
