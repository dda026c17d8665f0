"""What a turn's markers show under its narration: one line per change to a character, and the rolls the DM
asked players for, each with a Roll button only that player may press (anyone else is told so privately).

The buttons are discord.py dynamic items: their custom id says which turn and which roll, so they work after
a restart too. The roll goes through the engine (CampaignEdits.answer_roll) like /dm roll's.
"""
from __future__ import annotations

import logging

import discord

from cogs.common import shorten
from cogs.errors import friendly, tell
from engine.errors import EngineError
from engine.records import Turn

log = logging.getLogger(__name__)


def effect_lines(turn: Turn) -> str:
    """The turn's changes to characters, one line each ("Aria takes 5 damage (HP 10/24)")."""
    lines = (turn.effects or {}).get("lines", [])
    return "\n".join(f"📜 {discord.utils.escape_markdown(line)}" for line in lines)


def asked(request: dict) -> str:
    reason = f" for {request['reason'][:1].upper()}{request['reason'][1:]}" if request["reason"] else ""
    return f"🎲 {discord.utils.escape_markdown(request['name'])}, roll {request['expression']}{reason}"


def requests_message(turn: Turn) -> tuple[str, discord.ui.View] | None:
    """The rolls the DM asked for in this turn, with their buttons; None when it asked for none."""
    requests = (turn.effects or {}).get("requests", [])
    if not requests:
        return None
    view = discord.ui.View(timeout=None)
    for index, request in enumerate(requests[:25]):  # a message holds at most 25 buttons
        view.add_item(RollButton(turn.id, index, request["name"]))
    return shorten("\n".join(asked(r) for r in requests)), view


class RollButton(discord.ui.DynamicItem[discord.ui.Button], template=r"dm:roll:(?P<turn>[0-9]+):(?P<index>[0-9]+)"):
    """"Roll for Aria": rolls what the DM asked of Aria, as Aria, when Aria presses it."""

    def __init__(self, turn_id: int, index: int, name: str = "") -> None:
        label = shorten(f"Roll for {name}", 80) if name else "Roll"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.primary,
                                           custom_id=f"dm:roll:{turn_id}:{index}"))
        self.turn_id, self.index = turn_id, index

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match) -> "RollButton":
        made = cls(int(match["turn"]), int(match["index"]))
        made.item.label = item.label
        return made

    async def callback(self, interaction: discord.Interaction) -> None:
        services = interaction.client.services  # type: ignore[attr-defined]
        user = interaction.user
        try:
            campaign = await services.store.campaign_for_channel(interaction.channel_id or 0)
            if campaign is None:
                await tell(interaction, "⚠️ There is no running campaign here.")
                return
            request, rolled = await services.edits.answer_roll(campaign, self.turn_id, self.index, user.id,
                                                                user.display_name)
        except EngineError as exc:  # not theirs, made already, a turn undone or retold
            await tell(interaction, friendly(exc))
            return
        why = f", {request['reason'][:1].upper()}{request['reason'][1:]}" if request["reason"] else ""
        await interaction.response.send_message(
            shorten(f"🎲 {discord.utils.escape_markdown(user.display_name)}{why}: {rolled.shown}"))
        desk = interaction.client.get_cog("RoundDesk")  # type: ignore[attr-defined]
        if desk is not None:
            await desk.keeper.check(campaign.id)  # the round may have waited for this roll
