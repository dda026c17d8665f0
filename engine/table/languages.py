"""The table's languages: the story is kept in the model's language, what the players read beside it.

One path for a turn's text both ways: what streams to the table and what is saved come from the same
TurnLanguage, which reads the campaign's glossary once per turn.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from engine.errors import Unavailable
from engine.jobs.job import View
from engine.records import Action, Campaign
from engine.store import Store
from engine.table.narration import defuse_mentions
from engine.translation import Translation
from engine.translation.providers import Generate

log = logging.getLogger(__name__)


class TableLanguage:
    """Translation for a campaign's table, the glossary read from the store."""

    def __init__(self, translation: Translation, store: Store) -> None:
        self.translation, self.store = translation, store

    def note(self, campaign: Campaign, error: Unavailable, notes: list[str]) -> None:
        """Tell the table once per outage that its text went untranslated."""
        log.warning("translation for campaign %s failed: %s", campaign.id, error)
        note = self.translation.outage_note(campaign.id, error)
        if note:
            notes.append(note)

    async def to_model_outside(self, campaign: Campaign, text: str) -> tuple[str, str | None]:
        """Text an admin wrote outside a turn, translated when the provider can do it without the text
        model (which only a turn's job holds); kept as written, with a note, when it cannot."""
        if not self.translation.needed(campaign.language) or self.translation.turns_only:
            return text, None
        notes: list[str] = []
        try:
            return await self.translation.to_model(text, campaign.language, await self.store.glossary(campaign.id)), None
        except Unavailable as exc:  # kept as written: still better than losing it
            self.note(campaign, exc, notes)
            return text, notes[0] if notes else None

    async def for_turn(self, campaign: Campaign, generate: Generate) -> "TurnLanguage":
        glossary = await self.store.glossary(campaign.id) if self.translation.needed(campaign.language) else {}
        return TurnLanguage(self, campaign, glossary, generate)


class TurnLanguage:
    """One turn's translation: the pending actions in, the narration out, and the same narration as it
    streams (finished sentences only), all with one reading of the glossary."""

    def __init__(self, table: TableLanguage, campaign: Campaign, glossary: dict[str, str], generate: Generate) -> None:
        self.table, self.campaign, self.glossary, self.generate = table, campaign, glossary, generate
        self.translation = table.translation
        self.needed = self.translation.needed(campaign.language)

    async def actions_in(self, actions: Sequence[Action], extra: str, notes: list[str]) -> tuple[list[Action], str]:
        """The actions and the direction in the model's language; the new translations are stored."""
        if not self.needed:
            return list(actions), extra
        done: dict[int, str] = {}
        language = self.campaign.language
        try:
            for action in actions:
                if action.original is None:
                    done[action.id] = await self.translation.to_model(action.text, language, self.glossary,
                                                                      self.generate)
            if extra.strip():
                extra = await self.translation.to_model(extra, language, self.glossary, self.generate)
        except Unavailable as exc:  # the turn goes on with what is untranslated
            self.table.note(self.campaign, exc, notes)
        if done:
            await self.table.store.translate_actions(done)
        return [dataclasses.replace(a, text=done[a.id], original=a.text) if a.id in done else a
                for a in actions], extra

    async def to_model(self, text: str) -> str:
        """A short text in the model's language (a picture's focus); as written when the translator fails."""
        if not self.needed or not text:
            return text
        try:
            return await self.translation.to_model(text, self.campaign.language, self.glossary, self.generate)
        except Unavailable:
            return text

    async def narration_out(self, narration: str, notes: list[str]) -> str | None:
        """The narration in the players' language (None: they read it as the model wrote it)."""
        if not self.needed:
            return None
        try:
            return defuse_mentions(await self.translation.to_players(
                narration, self.campaign.language, self.glossary, self.generate))
        except Unavailable as exc:
            self.table.note(self.campaign, exc, notes)
            return None

    def streamed(self, kept: View) -> View:
        """What the table sees of the text so far: what the story keeps of it, in the players' language
        (finished sentences translated one at a time)."""
        live = self.translation.live(self.campaign.language, self.glossary)
        if live is None:
            return kept

        async def view(text: str) -> str:
            return await live.update(await kept(text))
        return view
