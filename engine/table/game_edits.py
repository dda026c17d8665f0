"""Edits to the game outside a turn: the fight (start, NPCs in, next, remove, end) and the quests. A mixin of
CampaignEdits (engine/table/edits.py): quick, no model; each change to the fight is read and written in one
transaction, so a turn's markers saved meanwhile are never overwritten."""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

from engine.errors import BadInput
from engine.game import Sheet, sheet_from_json
from engine.game.combat import Combatant, Fight, fight_from_json
from engine.game.quests import FIELD_MAX_CHARS, MAX_STEPS, STEP_MAX_CHARS, TITLE_MAX_CHARS, checked
from engine.records import Campaign, Quest
from engine.store import Store

NO_FIGHT = "there is no fight here: an admin starts one with /dm combat start"


class GameEdits:
    """Needs CampaignEdits' `store`."""
    store: Store

    # --- the fight ---
    async def fight(self, campaign: Campaign) -> Fight | None:
        data = await self.store.fight(campaign.id)
        return fight_from_json(data) if data else None

    async def change_fight(self, campaign: Campaign, change: FightChange) -> tuple[Fight | None, object]:
        """One change to the fight (from the functions below), read and written in one transaction: the fight
        after it and what it says. A caller may first try `change` on the fight as it stands (it is pure)."""
        def changed(data: str | None):
            fight, said = change(fight_from_json(data) if data else None)
            return (fight.to_json() if fight is not None else None), fight, said
        _, fight, said = await self.store.change_fight(campaign.id, changed)
        return fight, said

    async def party_sheets(self, campaign: Campaign) -> dict[int, Sheet]:
        return {a: sheet_from_json(d) for a, d in (await self.store.sheets(campaign.id)).items()}

    async def show_fight_in(self, campaign: Campaign, where: tuple[int, int]) -> None:
        """Where the fight's tracker message is (a channel's id and the message's)."""
        await self.change_fight(campaign, lambda f: (dataclasses.replace(_on(f), shown_in=where), None))

    # --- quests ---
    async def add_quest(self, campaign: Campaign, title: str, giver: str = "", reward: str = "") -> Quest:
        return await self.store.add_quest(campaign.id, checked(title, "title", TITLE_MAX_CHARS, required=True),
                                          checked(giver, "giver", FIELD_MAX_CHARS),
                                          checked(reward, "reward", FIELD_MAX_CHARS))

    async def quest_step(self, campaign: Campaign, quest_id: int, text: str) -> Quest:
        step = checked(text, "step", STEP_MAX_CHARS, required=True)
        quest = await self._quest(campaign, quest_id)
        if len(quest.steps) >= MAX_STEPS:
            raise BadInput(f"a quest holds at most {MAX_STEPS} steps")
        return await self.store.update_quest(campaign.id, quest_id, step=step)  # type: ignore[return-value]

    async def close_quest(self, campaign: Campaign, quest_id: int, status: str) -> Quest:
        await self._quest(campaign, quest_id)
        return await self.store.update_quest(campaign.id, quest_id, status=status)  # type: ignore[return-value]

    async def _quest(self, campaign: Campaign, quest_id: int) -> Quest:
        found = next((q for q in await self.store.quests(campaign.id) if q.id == quest_id), None)
        if found is None:
            raise BadInput(f"this campaign has no quest #{quest_id} (/dm quests lists them)")
        return found


# The changes a fight takes: pure functions of the fight as it stands (None: no fight) -> (the fight after, what
# to say), raising BadInput when the change does not fit.
FightChange = Callable[[Fight | None], tuple[Fight | None, object]]


def starting(sheets: Mapping[int, Sheet], exact: bool = False) -> FightChange:
    """Initiative for every character with a sheet; refused while a fight is on."""
    def start(fight: Fight | None):
        if fight is not None:
            raise BadInput("a fight is on already: /dm combat end ends it")
        started = dataclasses.replace(Fight.start(sheets), exact=exact)
        return started, list(started.order)
    return start


def adding(name: str, modifier: int = 0, hp: int = 10, ac: int | None = None, count: int = 1) -> FightChange:
    return lambda fight: _on(fight).add(name, modifier, hp, ac, count)


def stepping(fight: Fight | None) -> tuple[Fight, Combatant]:
    moved = _on(fight).next()
    return moved, moved.current


def removing(name: str) -> FightChange:
    def remove(fight: Fight | None):
        found = _on(fight).find(name)
        return _on(fight).remove(name), found.name if found else name
    return remove


def ending(fight: Fight | None) -> tuple[None, Fight]:
    """The fight ends; what it says is the fight as it ended (its tracker says so)."""
    return None, _on(fight)


def _on(fight: Fight | None) -> Fight:
    if fight is None:
        raise BadInput(NO_FIGHT)
    return fight
