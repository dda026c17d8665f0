"""What every command repeats: acknowledge the interaction, the bot's own admin check, the campaign of
this channel, the reply; and Discord's message limit, with the ways text is kept within it.

Mentions need nothing here: the bot's default allowed_mentions (none) goes with every message it
sends or edits (bot/app.py).
"""
from __future__ import annotations

from typing import Callable

import discord
from discord import app_commands

from bot.services import Services
from engine.errors import BadInput
from engine.records import Campaign

MESSAGE_LIMIT = 2000  # Discord refuses a message past 2,000 characters
LIST_LIMIT = MESSAGE_LIMIT - 100  # a listing, with room for the line below it that marks a cut


class NotAllowed(app_commands.CheckFailure):
    """The member lacks the permission the bot itself checks."""


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Text within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole_lines(text: str, limit: int = LIST_LIMIT) -> str:
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


def require_admin(interaction: discord.Interaction, services: Services) -> None:
    """Refuse (NotAllowed) unless the member is an admin: the admin role is the config's."""
    admin_role = services.config.discord.admin_role
    if not is_admin(interaction, admin_role):
        role = f" or the {admin_role} role" if admin_role else ""
        raise NotAllowed(f"🔒 Only members with Manage Server{role} can do that.")


async def campaign_here(services: Services, interaction: discord.Interaction) -> Campaign:
    campaign = await services.store.campaign_for_channel(interaction.channel_id or 0)
    if campaign is None:
        raise BadInput("there is no campaign in this channel; start one with /dm start")
    return campaign


async def acknowledge(interaction: discord.Interaction, *, public: bool = False) -> None:
    """Answer within Discord's 3 seconds with "thinking…": seen only by who asked unless `public`.
    (For a slash command `thinking=` changes nothing: its defer is always a "thinking…" reply.)"""
    await interaction.response.defer(ephemeral=not public)


async def begin(interaction: discord.Interaction, services: Services, *, admin: bool = False,
                public: bool = False, check: Callable[[], None] | None = None) -> Campaign:
    """How a campaign command opens: acknowledged, the admin check where `admin`, the campaign of this
    channel, and the command's own `check` (raising BadInput) after it; returns the campaign.

    A private reply is deferred first. A public one is deferred only after the checks, so that a
    refusal goes only to who asked: after a public defer even an "ephemeral" followup would replace
    the public "thinking…" reply and show to the whole channel.
    """
    if not public:
        await acknowledge(interaction)
    if admin:
        require_admin(interaction, services)
    campaign = await campaign_here(services, interaction)
    if check is not None:
        check()
    if public:
        await acknowledge(interaction, public=True)
    return campaign


async def reply(interaction: discord.Interaction, text: str, *, public: bool = False,
                view: discord.ui.View = discord.utils.MISSING) -> None:
    """The command's answer: the followup of a deferred interaction, else its first response;
    seen only by who asked unless `public`."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=not public, view=view)
    else:
        await interaction.response.send_message(text, ephemeral=not public, view=view)
