"""The turn pipeline: translate in -> recall -> prompt within budget -> generate (streamed) -> translate
out -> commit -> summarise. It calls; each step lives in a room of its own."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from engine.errors import BadInput, Unavailable
from engine.game import Sheet, sheet_from_json
from engine.game.combat import fight_from_json
from engine.game.ledger import Party
from engine.game.quests import quest_line
from engine.game.markers import ends_with_roll, last_roll
from engine.generation import GenerationSettings
from engine.table.turn_markers import MAX_ROLLS_A_TURN, Narration, npc_rolls

from engine.jobs import Job, JobContext
from engine.memory import MemoryBank, Recalled, turn_queries
from engine.memory.summaries import Summaries
from engine.records import Action, Campaign, Turn
from engine.store import Store
from engine.table.cards import mentions, triggered_cards
from engine.table.context import PromptMemory, recall_within_budget
from engine.table.edits import running_campaign
from engine.table.languages import TableLanguage, TurnLanguage
from engine.table.kept_text import stream_view
from engine.table.prompt import BuiltPrompt, build_prompt
from engine.table.settings import CampaignSettings, NarratorSettings, campaign_settings
from engine.textgen.base import TextBackend
from engine.textgen.voice import Voice

log = logging.getLogger(__name__)
MIN_GOING_ON_TOKENS = 8  # after a roll, fewer tokens left than this: the narration ends with it


@dataclass(frozen=True)
class TurnResult:
    turn: Turn
    recalled: tuple[Recalled, ...]
    prompt_tokens: int
    turns_in_prompt: int
    notes: tuple[str, ...] = ()  # for the players, e.g. that translation failed this time
    memory: PromptMemory | None = None  # what the prompt held from memory (/dm memory last)


class Narrator:
    """Narrates a turn (and retells the last one): the pipeline a newcomer reads first."""

    def __init__(self, store: Store, memory: MemoryBank, backend: TextBackend, settings: NarratorSettings,
                 language: TableLanguage, summaries: Summaries) -> None:
        self.store, self.memory, self.backend, self.settings = store, memory, backend, settings
        self.language, self.summaries = language, summaries

    def campaign_settings(self, campaign: Campaign) -> CampaignSettings:
        return campaign_settings(self.settings, campaign)

    async def turn(self, job: Job, ctx: JobContext) -> TurnResult:
        campaign = await running_campaign(self.store, job.campaign_id)
        actions = await self.store.pending_actions(campaign.id)
        extra = str(job.payload.get("text", ""))
        turns = await self.store.recent_turns(campaign.id, self.settings.recent_turns)
        if not actions and not extra.strip() and not turns and not campaign.premise:
            raise BadInput("nothing to narrate yet: write what your characters do first")
        notes: list[str] = []
        pause = time.time() - turns[-1].created if turns else 0.0
        if self.settings.recap_after_hours and pause > self.settings.recap_after_hours * 3600:
            notes.append(f"the last turn was {pause / 3600:.0f} hours ago: /dm recap tells the story so far")
        language = await self._language(campaign, ctx)
        actions, extra = await language.actions_in(actions, extra, notes)
        narration, built, remembered = await self._narrate(campaign, turns, actions, extra, ctx, language)
        used = list(built.actions)  # the oldest that fitted; the others stay pending for the next turn
        if len(used) < len(actions):
            notes.append(f"{len(actions) - len(used)} newer action(s) did not fit in this turn; "
                         "they wait for the next one")
        shown = await language.narration_out(narration.text, notes)
        entries = await self.memory.turn_entries(used, narration.text)
        turn, _ = await self.store.commit_turn(campaign.id, [a.id for a in used], narration.text, entries, shown,
                                               remembered.to_dict(), settle=narration.settle)
        result = self._result(turn, built, remembered, notes)
        ctx.resolve(result)  # players see the turn now; the summary below still holds the channel
        await self.summaries.summarise(campaign, ctx, every=self.campaign_settings(campaign).summarize_every,
                                       force=False)
        return result

    async def retry(self, job: Job, ctx: JobContext) -> TurnResult:
        campaign = await running_campaign(self.store, job.campaign_id)
        last = await self.store.last_turn(campaign.id)
        if last is None:
            raise BadInput("there is no narration to retry yet")
        turns = [t for t in await self.store.recent_turns(campaign.id, self.settings.recent_turns + 1) if t.id != last.id]
        language = await self._language(campaign, ctx)
        narration, built, remembered = await self._narrate(campaign, turns[-self.settings.recent_turns:],
                                                           last.actions, "", ctx, language, may_defer=False)
        notes: list[str] = []
        shown = await language.narration_out(narration.text, notes)
        entries = await self.memory.turn_entries(last.actions, narration.text)
        turn, _ = await self.store.replace_narration(last.id, narration.text, entries, shown, remembered.to_dict(),
                                                     settle=narration.settle)  # the old markers' effects go
        return self._result(turn, built, remembered, notes)

    async def _language(self, campaign: Campaign, ctx: JobContext) -> TurnLanguage:
        return await self.language.for_turn(campaign, ctx.generate)

    @staticmethod
    def _result(turn: Turn, built: BuiltPrompt, remembered: PromptMemory, notes: list[str]) -> TurnResult:
        return TurnResult(turn, built.memories, built.tokens, built.turns_used, tuple(notes), remembered)

    async def _narrate(self, campaign: Campaign, turns: Sequence[Turn], actions: Sequence[Action], extra: str,
                       ctx: JobContext, language: TurnLanguage,
                       may_defer: bool = True) -> tuple[Narration, BuiltPrompt, PromptMemory]:
        settings = self.campaign_settings(campaign)
        budget = self.settings.context_tokens - settings.generation.max_new_tokens
        cards = triggered_cards(await self.store.cards(campaign.id), mentions(actions, extra, turns))
        sheets = {author: sheet_from_json(data) for author, data in (await self.store.sheets(campaign.id)).items()}
        party = await self._party_lines(sheets.values(), language)
        quests = [await language.to_model(quest_line(q)) for q in await self.store.quests(campaign.id)
                  if q.status == "active"]
        fight = await self.store.fight(campaign.id)
        combat = fight_from_json(fight).block(sheets) if fight else ""

        def build(recalled: list[Recalled], window: list[Turn]) -> BuiltPrompt:
            return build_prompt(campaign, memories=recalled, turns=window, actions=actions, extra=extra,
                                render=self.backend.render, count_tokens=self.backend.count_tokens, budget=budget,
                                action_limit=self.settings.action_max_chars, may_defer=may_defer, cards=cards,
                                party=party, quests=quests, combat=combat)

        # Recall with what the players do now; the window and recall agree on the turns the prompt holds.
        built = await recall_within_budget(
            self.memory, campaign.id, turn_queries(actions, extra, turns, self.memory.chunk), turns,
            top_k=self.settings.top_k, min_score=self.settings.min_score, build=build)
        # Everyone who plays: this turn's and recent turns' authors, and the table's roster (/dm join)
        authors = {a.author_id: a.author_name for t in turns for a in t.actions} | {a.author_id: a.author_name for a in actions}
        authors |= {author: name for author, (name, _) in (await self.store.players(campaign.id)).items()}
        names = set(authors.values())
        # The table reads what the story keeps, as it streams (then translated): never a sentence taken back,
        # never a marker.
        ctx.show_through(language.streamed(stream_view(names)))
        voice = Voice(tuple(sorted(names)))  # drawn in the DM's voice where the backend can steer it
        table = Party(sheets, authors)
        reply = await self._draw(ctx, built.rendered, settings.generation, voice, table)
        narration = Narration.of(reply, names, table)
        if not narration.text and settings.generation.do_sample:  # it only played the players: one more draw
            ctx.restart_stream()
            narration = Narration.of(await self._draw(ctx, built.rendered, settings.generation, voice, table), names, table)
        if not narration.text:
            raise Unavailable("the model wrote nothing this time; try /dm continue again")
        return narration, built, PromptMemory.of(built, turns, budget)

    @staticmethod
    async def _party_lines(sheets: Iterable[Sheet], language: TurnLanguage) -> list[str]:
        """One line per character for the prompt, the sheets' free text in the model's language like pinned facts
        (a word at a time: each is cached, and the numbers that change every turn are never sent)."""
        sheets = list(sheets)
        said: dict[str, str] = {}
        if language.needed:
            for text in dict.fromkeys(t for sheet in sheets for t in sheet.free_texts()):
                said[text] = await language.to_model(text)
        return [sheet.with_texts(said).party_line() for sheet in sheets]

    async def _draw(self, ctx: JobContext, rendered: str, settings: GenerationSettings, voice: Voice,
                    party: Party) -> str:
        """The model's reply, stopped at each roll marker it writes: anyone's but a player's is rolled at once and
        written in its place, and the model goes on from there with the result before it; a player's roll
        ends the narration (the table rolls it with a button)."""
        written, left = "", settings.max_new_tokens
        for stops in range(MAX_ROLLS_A_TURN + 1):
            prompt = self.backend.extend(rendered, written)
            room = min(left, self.settings.context_tokens - self.backend.count_tokens(prompt))
            if written and room < MIN_GOING_ON_TOKENS:
                break
            step = dataclasses.replace(settings, max_new_tokens=max(1, room),
                                       min_new_tokens=min(settings.min_new_tokens, max(1, room)))
            piece = await ctx.generate(prompt, step, voice=voice,
                                       until=ends_with_roll if stops < MAX_ROLLS_A_TURN else None)
            left -= self.backend.count_tokens(piece)
            written += piece
            asked = last_roll(written)
            if asked is None or party.find(asked[1].who) is not None:
                break  # the reply ended, or a player is asked to roll: the narration ends with the asking
            written = npc_rolls(written, party)
            ctx.restart_stream(written)  # the table sees the roll where the marker was
        return written
