"""/dm combat and /dm quest: the fight's tracker (one message per fight, edited on each change and never
re-posted, pinned when the bot may pin) and the quests. The engine (engine/table/game_edits.py) checks and
changes; these commands say what happened."""
from __future__ import annotations

import contextlib
import logging
from typing import Callable

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import begin, reply, shorten, whole_lines
from engine.game import sheet_from_json
from engine.game.combat import Combatant, Fight, fight_from_json
from engine.table.game_edits import FightChange, adding, ending, removing, starting, stepping
from engine.errors import BadInput
from engine.game.quests import FIELD_MAX_CHARS, STEP_MAX_CHARS, TITLE_MAX_CHARS, checked, quest_line
from engine.records import Campaign, Turn

log = logging.getLogger(__name__)
esc = discord.utils.escape_markdown


async def refresh_tracker(services: Services, channel: discord.abc.Messageable, campaign: Campaign,
                          ended: Fight | None = None) -> None:
    """The fight's tracker shows the fight as it stands: edited in place, posted (and pinned) only when the
    fight has none yet; a fight that ended says so in its tracker."""
    fight = ended or await services.edits.fight(campaign)
    if fight is None or ended is not None and ended.shown_in is None:
        return
    sheets = {a: sheet_from_json(d) for a, d in (await services.store.sheets(campaign.id)).items()}
    text = "⚔️ The fight is over." if ended else shorten(fight.tracker(sheets))
    try:
        if fight.shown_in is not None:
            message = channel.get_partial_message(fight.shown_in[1])  # type: ignore[attr-defined]  # the campaign's channel
            await message.edit(content=text)
            if ended:
                with contextlib.suppress(discord.HTTPException):
                    await message.unpin()
            return
        if ended:
            return
        message = await channel.send(text)
        with contextlib.suppress(discord.HTTPException):  # pinned when the bot may pin
            await message.pin()
        await services.edits.show_fight_in(campaign, (message.channel.id, message.id))
    except discord.HTTPException as exc:  # the tracker is a view of the fight: the fight goes on without it
        log.warning("the fight's tracker in campaign %d was not shown: %s", campaign.id, exc)


def tracker_follows(services: Services, channel: discord.abc.Messageable, campaign: Campaign):
    """What a narration, a retry or an undo calls when its turn changed the fight (markers, the turn passing):
    the tracker shows the fight as it now stands, or that it is over."""
    async def follow(turn: Turn) -> None:
        before = (turn.effects or {}).get("fight_before")
        now = await services.edits.fight(campaign)
        ended = fight_from_json(before) if now is None and before else None
        await refresh_tracker(services, channel, campaign, ended=ended)
    return follow


def rolled(combatants: list[Combatant]) -> str:
    return " · ".join(f"{esc(c.name)} {c.shown}" for c in combatants)


class CombatCommands(app_commands.Group):
    """/dm combat start|add|next|remove|end: admins run the fight; each change is tried before it goes public."""

    def __init__(self, services: Services) -> None:
        super().__init__(name="combat", description="Fights in initiative order (admins run them)")
        self.services = services

    async def _change(self, interaction: discord.Interaction, change: FightChange) -> tuple[Campaign, Fight | None, object]:
        """An admin's change to the fight: tried on the fight as it stands before the answer goes public (a
        refusal is seen only by who asked), then made; the tracker follows."""
        edits = self.services.edits
        here = await self.services.store.campaign_for_channel(interaction.channel_id or 0)
        current = await edits.fight(here) if here else None
        campaign = await begin(interaction, self.services, admin=True, public=True, check=lambda: change(current))
        fight, said = await edits.change_fight(campaign, change)
        return campaign, fight, said

    @app_commands.command(description="Start a fight: initiative for every character with a sheet (admins)")
    @app_commands.describe(exact="Show NPCs' HP as numbers (otherwise unhurt, hurt, bloodied, down)")
    async def start(self, interaction: discord.Interaction, exact: bool = False) -> None:
        here = await self.services.store.campaign_for_channel(interaction.channel_id or 0)
        sheets = await self.services.edits.party_sheets(here) if here else {}
        campaign, _, combatants = await self._change(interaction, starting(sheets, exact))
        await reply(interaction, shorten(f"⚔️ Roll for initiative! {rolled(combatants)}"), public=True)  # type: ignore[arg-type]
        await refresh_tracker(self.services, interaction.channel, campaign)  # type: ignore[arg-type]

    @app_commands.command(description="Add NPCs to the fight: Goblin 1, Goblin 2, ... with count (admins)")
    @app_commands.describe(name="e.g. Goblin", mod="Initiative modifier", hp="Each one's HP", ac="Armour class",
                           count="How many (1 to 20)")
    async def add(self, interaction: discord.Interaction, name: str, mod: int = 0, hp: int = 10,
                  ac: int | None = None, count: int = 1) -> None:
        campaign, _, added = await self._change(interaction, adding(name, mod, hp, ac, count))
        await reply(interaction, shorten(f"⚔️ Joining the fight: {rolled(added)}"), public=True)  # type: ignore[arg-type]
        await refresh_tracker(self.services, interaction.channel, campaign)  # type: ignore[arg-type]

    @app_commands.command(name="next", description="The next combatant's turn (admins)")
    async def next_(self, interaction: discord.Interaction) -> None:
        campaign, fight, current = await self._change(interaction, stepping)
        await reply(interaction, f"▶️ Round {fight.round}: {esc(current.name)}'s turn.", public=True)  # type: ignore[union-attr]
        await refresh_tracker(self.services, interaction.channel, campaign)  # type: ignore[arg-type]

    @app_commands.command(description="Take someone out of the fight (admins)")
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        campaign, _, gone = await self._change(interaction, removing(name))
        await reply(interaction, f"⚔️ {esc(str(gone))} leaves the fight.", public=True)
        await refresh_tracker(self.services, interaction.channel, campaign)  # type: ignore[arg-type]

    @app_commands.command(description="End the fight (admins)")
    async def end(self, interaction: discord.Interaction) -> None:
        campaign, _, fight = await self._change(interaction, ending)
        await reply(interaction, f"🏁 The fight is over after {fight.round} round(s).", public=True)  # type: ignore[union-attr]
        await refresh_tracker(self.services, interaction.channel, campaign, ended=fight)  # type: ignore[arg-type]


class QuestCommands(app_commands.Group):
    """/dm quest add|step|done|fail (admins; refused privately) and list (anyone)."""

    def __init__(self, services: Services) -> None:
        super().__init__(name="quest", description="Quests: active ones are in the DM's prompt")
        self.services = services

    async def _begin(self, interaction: discord.Interaction, quest_id: int | None = None,
                     check: Callable[[], object] = lambda: None) -> Campaign:
        """Admins only; an unknown quest or a text that does not fit is refused before the answer goes public."""
        here = await self.services.store.campaign_for_channel(interaction.channel_id or 0)
        ids = {q.id for q in await self.services.store.quests(here.id)} if here else set()

        def checks() -> None:
            if quest_id is not None and quest_id not in ids:
                raise BadInput(f"this campaign has no quest #{quest_id} (/dm quests lists them)")
            check()
        return await begin(interaction, self.services, admin=True, public=True, check=checks)

    @app_commands.command(description="A new quest (admins)")
    async def add(self, interaction: discord.Interaction, title: str, giver: str = "", reward: str = "") -> None:
        campaign = await self._begin(interaction, check=lambda: [checked(title, "title", TITLE_MAX_CHARS, required=True),
                                                                 checked(giver, "giver", FIELD_MAX_CHARS),
                                                                 checked(reward, "reward", FIELD_MAX_CHARS)])
        quest = await self.services.edits.add_quest(campaign, title, giver, reward)
        await reply(interaction, f"📜 Quest #{quest.id}: {esc(quest_line(quest))}", public=True)

    @app_commands.command(description="A step of a quest: what happened (admins)")
    async def step(self, interaction: discord.Interaction, id: int, text: str) -> None:
        campaign = await self._begin(interaction, id, lambda: checked(text, "step", STEP_MAX_CHARS, required=True))
        quest = await self.services.edits.quest_step(campaign, id, text)
        await reply(interaction, f"📜 Quest #{quest.id}: {esc(quest_line(quest))}", public=True)

    @app_commands.command(description="A quest is done (admins)")
    async def done(self, interaction: discord.Interaction, id: int) -> None:
        await self._close(interaction, id, "done", "✅")

    @app_commands.command(description="A quest failed (admins)")
    async def fail(self, interaction: discord.Interaction, id: int) -> None:
        await self._close(interaction, id, "failed", "❌")

    async def _close(self, interaction: discord.Interaction, quest_id: int, status: str, mark: str) -> None:
        campaign = await self._begin(interaction, quest_id)
        quest = await self.services.edits.close_quest(campaign, quest_id, status)
        await reply(interaction, f"{mark} Quest #{quest.id} {status}: {esc(quest.title)}", public=True)

    @app_commands.command(name="list", description="The campaign's quests, active ones first")
    async def list_(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services)
        found = await self.services.store.quests(campaign.id)
        marks = {"active": "📜", "done": "✅", "failed": "❌"}
        ordered = sorted(found, key=lambda q: (q.status != "active", q.id))
        lines = [f"{marks[q.status]} #{q.id} {esc(quest_line(q))}" for q in ordered]
        await reply(interaction, whole_lines("\n".join(lines)) if lines else "No quests yet: an admin adds one with "
                                                                             "`/dm quest add`.")
