"""Edits outside a turn: quick, no model. Every write the players and admins make goes through here, so
each text is checked once (the limits of engine/table/settings.py) and kept in the model's language."""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from engine.errors import BadInput, Unavailable
from engine.game import Roll, Sheet, roll, sheet_from_json
from engine.memory import MemoryBank
from engine.records import Action, Campaign, Card, Memory
from engine.store import Store
from engine.table.game_edits import GameEdits
from engine.table.cards import KEY_MAX_CHARS, card_text, parse_keys
from engine.table.context import PromptMemory
from engine.table.languages import TableLanguage
from engine.table.narration import visible
from engine.table.prompt import cut_action
from engine.table.settings import (FACT_MAX_CHARS, PREMISE_MAX_CHARS, TEXT_LIMITS, NarratorSettings, campaign_settings,
                                   check_text)

log = logging.getLogger(__name__)
TERM_MAX_CHARS = 80  # a glossary entry is a name or a term, not a sentence
LOOK_NAME_MAX_CHARS, LOOK_MAX_CHARS = 80, 300


async def running_campaign(store: Store, campaign_id: int) -> Campaign:
    """The campaign a job or an edit is for; BadInput when it ended (or never was)."""
    campaign = await store.get_campaign(campaign_id)
    if campaign is None or not campaign.active:
        raise BadInput("there is no running campaign here")
    return campaign


class CampaignEdits(GameEdits):
    """Campaigns, actions, facts, looks, cards, the glossary, seats and settings, changed between turns (the fight
    and the quests: GameEdits)."""

    def __init__(self, store: Store, memory: MemoryBank, settings: NarratorSettings, language: TableLanguage) -> None:
        self.store, self.memory, self.settings, self.language = store, memory, settings, language

    # --- campaigns ---
    async def start_campaign(self, channel_id: int, name: str, premise: str,
                             language: str) -> tuple[Campaign, str | None]:
        """A new campaign; its premise is kept in the model's language like every fact the prompt holds
        (a Russian premise reached the English model untranslated). Returns it and a translation note."""
        premise = await self.check_new_campaign(channel_id, premise)
        campaign = await self.store.create_campaign(channel_id, name, premise, language=language)
        if not campaign.premise:
            return campaign, None
        premise, note = await self.language.to_model_outside(campaign, campaign.premise)
        if premise != campaign.premise:
            campaign = await self.store.update_campaign(campaign.id, premise=premise)
        return campaign, note

    async def check_new_campaign(self, channel_id: int, premise: str) -> str:
        """BadInput when the channel has a campaign running or the premise is too long; the premise kept.
        Quick (no model), so Discord can refuse privately before it says anything in public."""
        premise = check_text("a premise", premise, PREMISE_MAX_CHARS)
        running = await self.store.campaign_for_channel(channel_id)
        if running is not None:
            raise BadInput(f"this channel already has a campaign running: {running.name}")
        return premise

    async def end_campaign(self, campaign: Campaign) -> None:
        await self.store.end_campaign(campaign.id)

    async def set_campaign_text(self, campaign: Campaign, name: str, text: str) -> tuple[Campaign, str | None]:
        """Change the premise, the style or the author's note after the start; kept in the model's
        language like every fact the prompt holds. Returns the campaign and a translation note."""
        if name not in TEXT_LIMITS:
            raise BadInput(f"{name} is not a text of the campaign")
        text = check_text(name.replace("_", " "), text, TEXT_LIMITS[name])
        note = None
        if text:
            text, note = await self.language.to_model_outside(campaign, text)
        if name == "author_note":
            settings = {k: v for k, v in campaign.settings.items() if k != "author_note"}
            if text:
                settings["author_note"] = text
            return await self.store.update_campaign(campaign.id, settings=settings), note
        return await self.store.update_campaign(campaign.id, **{name: text}), note

    async def set_language(self, campaign: Campaign, language: str) -> Campaign:
        return await self.store.update_campaign(campaign.id, language=language)

    async def set_settings(self, campaign: Campaign, overrides: dict[str, object]) -> Campaign:
        """The campaign's overrides as a whole; refused (nothing stored) when a value is out of range."""
        campaign_settings(self.settings, dataclasses.replace(campaign, settings=overrides))
        return await self.store.update_campaign(campaign.id, settings=overrides)

    # --- actions ---
    async def add_action(self, campaign_id: int, author_id: int, author_name: str, text: str,
                         message_id: int | None = None) -> tuple[Action, str | None]:
        """Store a player's action (before anyone acknowledges it); returns it and a note if it was cut."""
        kept, note = self._checked_action(text)
        name = author_name.strip() or "Someone"
        action = await self.store.add_action(campaign_id, author_id, name, kept, message_id)
        try:
            await self.store.set_term(campaign_id, name, name, auto=True)  # names stay names in translation
        except Unavailable as exc:  # the action is stored: that is what the player must be told
            log.warning("glossary entry for %r not saved: %s", name, exc)
        return action, note

    async def add_roll(self, campaign: Campaign, author_id: int, author_name: str, rolled: Roll,
                       reason: str = "", *, secret: bool = False) -> Action:
        """A player's roll joins the story as a pending action of theirs ("[rolled 1d20+5 for Stealth =
        19]"), so the next narration, a retry and an undo all keep it as it fell; a secret one too (the DM
        narrates it), marked so that only admins see its dice in /dm rolls."""
        return await self.store.add_action(campaign.id, author_id, author_name.strip() or "Someone",
                                           rolled.story_text(reason), secret=secret)

    async def answer_roll(self, campaign: Campaign, turn_id: int, index: int, author_id: int,
                          author_name: str) -> tuple[dict, Roll]:
        """A roll the DM asked a player for (a marker of the last turn), made now with their sheet's modifiers;
        it joins their pending actions like /dm roll. BadInput when it is not theirs, made already or stale."""
        sheet = await self.sheet(campaign, author_id)

        def make(request: dict) -> tuple[str, Roll]:
            rolled = roll(request["expression"], sheet.modifiers() if sheet else None, reason=request["reason"])
            return rolled.story_text(request["reason"]), rolled

        return await self.store.answer_request(campaign.id, turn_id, index, author_id, author_name.strip() or "Someone",
                                               make)

    async def sheet(self, campaign: Campaign, author_id: int) -> Sheet | None:
        """A player's sheet in this campaign; None when they have none yet."""
        data = (await self.store.sheets(campaign.id)).get(author_id)
        return sheet_from_json(data) if data is not None else None

    async def change_sheet(self, campaign: Campaign, author_id: int, name: str,
                           change: Callable[[Sheet], tuple[Sheet, str]]) -> tuple[Sheet, str]:
        """One change to a player's sheet (a new sheet named after them if they have none), stored only
        when it fits; read and written in one transaction, so neither another change nor a turn's markers
        saved meanwhile are ever overwritten."""
        def changed(data: str | None) -> tuple[str, Sheet, str]:
            sheet, said = change(sheet_from_json(data) if data is not None else Sheet(name=name.strip() or "Someone"))
            return sheet.to_json(), sheet, said

        _, sheet, said = await self.store.change_sheet(campaign.id, author_id, changed)
        return sheet, said

    async def edit_action(self, message_id: int, text: str) -> tuple[Action | None, str | None]:
        """A pending action's message was edited: the action says what it says now. An edit to nothing
        visible withdraws it. None when the message holds no pending action (any more)."""
        if not visible(text):
            return await self.store.withdraw_action(message_id=message_id), None
        kept, note = self._checked_action(text)
        return await self.store.edit_action(message_id, kept), note

    async def withdraw_action(self, *, message_id: int | None = None, campaign_id: int | None = None,
                              author_id: int | None = None) -> Action | None:
        """Take back a pending action: the one of a message, or an author's latest."""
        return await self.store.withdraw_action(message_id=message_id, campaign_id=campaign_id, author_id=author_id)

    def _checked_action(self, text: str) -> tuple[str, str | None]:
        if not visible(text):
            raise BadInput("an empty action: write what your character does")
        kept, was_cut = cut_action(text, self.settings.action_max_chars)
        return kept, f"your action was cut to {self.settings.action_max_chars} characters" if was_cut else None

    async def seat(self, campaign: Campaign, author_id: int, name: str, *, joined: bool) -> None:
        """A player joins the rounds (they are waited for) or steps away."""
        await self.store.set_player(campaign.id, author_id, name, joined=joined)

    # --- what the DM knows ---
    async def pin_fact(self, campaign: Campaign, fact: str) -> tuple[Memory, str | None]:
        """Pin a fact the DM always remembers, in the model's language like every memory (so recall
        and the prompt stay in one language); returns it and a note when it could not be translated."""
        fact = fact.strip()[:FACT_MAX_CHARS]
        if not fact:
            raise BadInput("an empty fact: write what the DM should remember")
        fact, note = await self.language.to_model_outside(campaign, fact)
        return await self.memory.pin(campaign.id, fact), note

    async def forget(self, campaign: Campaign, memory_id: int) -> None:
        if not await self.store.delete_memory(campaign.id, memory_id):
            raise BadInput(f"this campaign has no memory #{memory_id}")

    async def reset_memory(self, campaign_id: int) -> int:
        """Forget every memory of the campaign, pinned facts too; returns how many."""
        return await self.store.reset_memory(campaign_id)

    async def note_look(self, campaign: Campaign, name: str, description: str) -> tuple[str, str | None]:
        """Keep how a character looks, in the model's language, for picture prompts."""
        name, description = name.strip()[:LOOK_NAME_MAX_CHARS], description.strip()[:LOOK_MAX_CHARS]
        if not name or not description:
            raise BadInput("give a name and a description")
        description, note = await self.language.to_model_outside(campaign, description)
        await self.store.set_look(campaign.id, name, description)
        return description, note

    async def add_card(self, campaign: Campaign, keys: str, text: str) -> tuple[Card, str | None]:
        """A story card, in the model's language like every fact the prompt holds. Its keys match as
        written and as translated: players mention them in their language, the story is in the model's."""
        written_keys, written = parse_keys(keys), card_text(text)
        text, note = await self.language.to_model_outside(campaign, written)
        keys_all = list(written_keys)
        if text != written:
            for key in written_keys:
                translated = (await self.language.to_model_outside(campaign, key))[0].strip(" .,;:!?\"'")
                if translated and len(translated) <= KEY_MAX_CHARS and translated.casefold() not in {
                        k.casefold() for k in keys_all}:
                    keys_all.append(translated)
        return await self.store.add_card(campaign.id, keys_all, text, written), note

    async def remove_card(self, campaign: Campaign, card_id: int) -> None:
        if not await self.store.remove_card(campaign.id, card_id):
            raise BadInput(f"this campaign has no card #{card_id}")

    async def add_term(self, campaign: Campaign, source: str, target: str) -> tuple[str, str]:
        """A glossary entry, both sides with their spaces tidied; returns them as kept."""
        source, target = " ".join(source.split()), " ".join(target.split())
        if not source or not target:
            raise BadInput("give both the players' word and the model's word")
        if len(source) > TERM_MAX_CHARS or len(target) > TERM_MAX_CHARS:
            raise BadInput(f"glossary entries are names and terms of at most {TERM_MAX_CHARS} characters")
        await self.store.set_term(campaign.id, source, target)
        return source, target

    async def remove_term(self, campaign: Campaign, source: str) -> None:
        source = " ".join(source.split())
        if not await self.store.remove_term(campaign.id, source):
            raise BadInput(f"the glossary has no entry {source[:TERM_MAX_CHARS]!r}")

    async def last_memory(self, campaign_id: int) -> tuple[int, PromptMemory] | None:
        """What the last turn's prompt held from memory, when that turn recorded it."""
        found = await self.store.turn_context(campaign_id)
        return None if found is None else (found[0], PromptMemory.from_dict(found[1]))
