"""The turn pipeline: recall -> prompt within budget -> generate (streamed) -> commit -> summarise."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from engine.table.cards import KEY_MAX_CHARS, card_text, mentions, parse_keys, triggered_cards
from engine.errors import BadInput, Unavailable
from engine.generation import GenerationSettings
from engine.jobs import Job
from engine.memory import MemoryBank
from engine.table.narration import clean_narration, defuse_mentions, keep_voice, visible, whole_sentences
from engine.table.prompt import BuiltPrompt, build_prompt, cut_action
from engine.memory import Recalled, turn_queries
from engine.records import Action, Campaign, Card, Memory, Turn
from engine.table.rounds import RoundRules
from engine.jobs import JobContext
from engine.pictures.scene import PICTURE_SETTINGS, PicturePrompt, compose_picture_prompt, scene_prompt
from engine.store import Store
from engine.memory.summarize import PipelineSummarizer, story_text, summary_pieces, summary_prompt, summary_settings
from engine.textgen.base import TextBackend
from engine.translation import Translation
from engine.table.context import PromptMemory, recall_within_budget
from engine.jobs import ModelWorker

log = logging.getLogger(__name__)
FACT_MAX_CHARS = 1000  # a pinned fact goes into every prompt: keep it a fact, not a chapter
NOTE_MAX_CHARS = 300  # the author's note too, and close to the end where it weighs most


@dataclass(frozen=True)
class NarratorSettings:
    generation: GenerationSettings
    context_tokens: int = 2048
    top_k: int = 5
    min_score: float = 0.25
    summarize_every: int = 6
    recent_turns: int = 8
    action_max_chars: int = 1000
    summary_max_tokens: int = 120
    picture_spoiler: bool = True


@dataclass(frozen=True)
class TurnResult:
    turn: Turn
    recalled: tuple[Recalled, ...]
    prompt_tokens: int
    turns_in_prompt: int
    notes: tuple[str, ...] = ()  # for the players, e.g. that translation failed this time
    memory: PromptMemory | None = None  # what the prompt held from memory (/dm memory last)


@dataclass(frozen=True)
class CampaignSettings:
    generation: GenerationSettings
    summarize_every: int
    picture_spoiler: bool
    picture_seed: int  # -1: a new seed for every picture
    author_note: str = ""  # a standing direction near the end of every prompt ("keep it grim")
    rounds: RoundRules = RoundRules(False, 120, 3)


def _check(name: str, value: object, kind: type, low: int = 0, high: int = 0) -> None:
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok or (kind is int and not low <= value <= high):  # type: ignore[operator]
        wanted = "true or false" if kind is bool else f"a whole number from {low} to {high}"
        raise BadInput(f"{name} must be {wanted}, not {value!r}")


class Narrator:
    def __init__(
        self, store: Store, memory: MemoryBank, backend: TextBackend, settings: NarratorSettings,
        summarizer: ModelWorker[PipelineSummarizer] | None = None, translation: Translation | None = None,
    ) -> None:
        self.store, self.memory, self.backend, self.settings = store, memory, backend, settings
        self.summarizer = summarizer
        self.translation = translation or Translation(None, "en")

    # --- outside jobs: quick, no model ---
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

    async def edit_action(self, message_id: int, text: str) -> tuple[Action | None, str | None]:
        """A pending action's message was edited: the action says what it says now. An edit to nothing
        visible withdraws it. None when the message holds no pending action (any more)."""
        if not visible(text):
            return await self.store.withdraw_action(message_id=message_id), None
        kept, note = self._checked_action(text)
        return await self.store.edit_action(message_id, kept), note

    def _checked_action(self, text: str) -> tuple[str, str | None]:
        if not visible(text):
            raise BadInput("an empty action: write what your character does")
        kept, was_cut = cut_action(text, self.settings.action_max_chars)
        return kept, f"your action was cut to {self.settings.action_max_chars} characters" if was_cut else None

    async def pin_fact(self, campaign: Campaign, fact: str) -> tuple[Memory, str | None]:
        """Pin a fact the DM always remembers, in the model's language like every memory (so recall
        and the prompt stay in one language); returns it and a note when it could not be translated."""
        fact = fact.strip()[:FACT_MAX_CHARS]
        if not fact:
            raise BadInput("an empty fact: write what the DM should remember")
        fact, note = await self.to_model_language(campaign, fact)
        return await self.memory.pin(campaign.id, fact), note

    async def note_look(self, campaign: Campaign, name: str, description: str) -> tuple[str, str | None]:
        """Keep how a character looks, in the model's language, for picture prompts."""
        name, description = name.strip()[:80], description.strip()[:300]
        if not name or not description:
            raise BadInput("give a name and a description")
        description, note = await self.to_model_language(campaign, description)
        await self.store.set_look(campaign.id, name, description)
        return description, note

    async def add_card(self, campaign: Campaign, keys: str, text: str) -> tuple[Card, str | None]:
        """A story card, in the model's language like every fact the prompt holds. Its keys match as
        written and as translated: players mention them in their language, the story is in the model's."""
        written_keys, written = parse_keys(keys), card_text(text)
        text, note = await self.to_model_language(campaign, written)
        keys_all = list(written_keys)
        if text != written:
            for key in written_keys:
                translated = (await self.to_model_language(campaign, key))[0].strip(" .,;:!?\"'")
                if translated and len(translated) <= KEY_MAX_CHARS and translated.casefold() not in {
                        k.casefold() for k in keys_all}:
                    keys_all.append(translated)
        return await self.store.add_card(campaign.id, keys_all, text, written), note

    async def start_campaign(self, channel_id: int, name: str, premise: str,
                             language: str) -> tuple[Campaign, str | None]:
        """A new campaign; its premise is kept in the model's language like every fact the prompt holds
        (a Russian premise reached the English model untranslated). Returns it and a translation note."""
        campaign = await self.store.create_campaign(channel_id, name, premise.strip(), language=language)
        if not campaign.premise:
            return campaign, None
        premise, note = await self.to_model_language(campaign, campaign.premise)
        if premise != campaign.premise:
            campaign = await self.store.update_campaign(campaign.id, premise=premise)
        return campaign, note

    async def to_model_language(self, campaign: Campaign, text: str) -> tuple[str, str | None]:
        """Text an admin wrote outside a turn, translated when the provider can do it without the text
        model (which only a turn's job holds); kept as written, with a note, when it cannot."""
        if not self.translation.needed(campaign.language) or self.translation.turns_only:
            return text, None
        notes: list[str] = []
        try:
            return await self.translation.to_model(text, campaign.language, await self.store.glossary(campaign.id)), None
        except Unavailable as exc:  # kept as written: still better than losing it
            self._note(campaign, exc, notes)
            return text, notes[0] if notes else None

    def campaign_settings(self, campaign: Campaign) -> CampaignSettings:
        overrides = dict(campaign.settings)
        every = overrides.pop("summarize_every", self.settings.summarize_every)
        spoiler = overrides.pop("picture_spoiler", self.settings.picture_spoiler)
        seed = overrides.pop("picture_seed", -1)
        note = overrides.pop("author_note", "")
        rounds = RoundRules(overrides.pop("rounds", False), overrides.pop("round_timeout", 120),
                            overrides.pop("round_window", 3))
        _check("rounds", rounds.enabled, bool)
        _check("round_timeout", rounds.timeout_s, int, 0, 7 * 24 * 3600)
        _check("round_window", rounds.window, int, 1, 100)
        _check("summarize_every", every, int, 0, 1000)
        _check("picture_spoiler", spoiler, bool)
        _check("picture_seed", seed, int, -1, 2**32 - 1)
        if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
            raise BadInput(f"author_note must be a text of at most {NOTE_MAX_CHARS} characters")
        return CampaignSettings(self.settings.generation.with_overrides(overrides), every, spoiler, seed, note,
                                rounds)

    async def set_campaign_text(self, campaign: Campaign, name: str, text: str) -> tuple[Campaign, str | None]:
        """Change the premise, the style or the author's note after the start; kept in the model's
        language like every fact the prompt holds. Returns the campaign and a translation note."""
        text = text.strip()[: NOTE_MAX_CHARS if name == "author_note" else FACT_MAX_CHARS]
        note = None
        if text:
            text, note = await self.to_model_language(campaign, text)
        if name == "author_note":
            settings = {k: v for k, v in campaign.settings.items() if k != "author_note"}
            if text:
                settings["author_note"] = text
            return await self.store.update_campaign(campaign.id, settings=settings), note
        if name not in ("premise", "style"):
            raise BadInput(f"{name} is not a text of the campaign")
        return await self.store.update_campaign(campaign.id, **{name: text}), note

    async def campaign(self, campaign_id: int) -> Campaign:
        campaign = await self.store.get_campaign(campaign_id)
        if campaign is None or not campaign.active:
            raise BadInput("there is no running campaign here")
        return campaign

    # --- the job handler the runner calls ---
    async def handle(self, job: Job, ctx: JobContext) -> Any:
        if job.kind == "turn":
            return await self._turn(job, ctx)
        if job.kind == "retry":
            return await self._retry(job, ctx)
        if job.kind == "undo":
            return await self.store.undo_last_turn((await self.campaign(job.campaign_id)).id)
        if job.kind == "picture_prompt":
            return await self._picture_prompt(job, ctx)
        if job.kind == "summary":
            return await self._summarise(await self.campaign(job.campaign_id), ctx, force=True)
        raise BadInput(f"the narrator does not do {job.kind} jobs")

    async def _turn(self, job: Job, ctx: JobContext) -> TurnResult:
        campaign = await self.campaign(job.campaign_id)
        actions = await self.store.pending_actions(campaign.id)
        extra = str(job.payload.get("text", ""))
        turns = await self.store.recent_turns(campaign.id, self.settings.recent_turns)
        if not actions and not extra.strip() and not turns and not campaign.premise:
            raise BadInput("nothing to narrate yet: write what your characters do first")
        notes: list[str] = []
        actions, extra = await self._translate_in(campaign, actions, extra, ctx, notes)
        narration, built, remembered = await self._narrate(campaign, turns, actions, extra, ctx)
        used = list(built.actions)  # the oldest that fitted; the others stay pending for the next turn
        if len(used) < len(actions):
            notes.append(f"{len(actions) - len(used)} newer action(s) did not fit in this turn; "
                         "they wait for the next one")
        shown = await self._translate_out(campaign, narration, ctx, notes)
        entries = await self.memory.turn_entries(used, narration)
        turn, _ = await self.store.commit_turn(campaign.id, [a.id for a in used], narration, entries, shown,
                                               remembered.to_dict())
        result = self._result(turn, built, remembered, notes)
        ctx.resolve(result)  # players see the turn now; the summary below still holds the channel
        await self._summarise(campaign, ctx, force=False)
        return result

    async def _retry(self, job: Job, ctx: JobContext) -> TurnResult:
        campaign = await self.campaign(job.campaign_id)
        last = await self.store.last_turn(campaign.id)
        if last is None:
            raise BadInput("there is no narration to retry yet")
        turns = [t for t in await self.store.recent_turns(campaign.id, self.settings.recent_turns + 1) if t.id != last.id]
        narration, built, remembered = await self._narrate(campaign, turns[-self.settings.recent_turns:],
                                                           last.actions, "", ctx, may_defer=False)
        notes: list[str] = []
        shown = await self._translate_out(campaign, narration, ctx, notes)
        entries = await self.memory.turn_entries(last.actions, narration)
        turn, _ = await self.store.replace_narration(last.id, narration, entries, shown, remembered.to_dict())
        return self._result(turn, built, remembered, notes)

    @staticmethod
    def _result(turn: Turn, built: BuiltPrompt, remembered: PromptMemory, notes: list[str]) -> TurnResult:
        return TurnResult(turn, built.memories, built.tokens, built.turns_used, tuple(notes), remembered)

    async def last_memory(self, campaign_id: int) -> tuple[int, PromptMemory] | None:
        """What the last turn's prompt held from memory, when that turn recorded it."""
        found = await self.store.turn_context(campaign_id)
        return None if found is None else (found[0], PromptMemory.from_dict(found[1]))

    # --- translation: the story is kept in the model's language, what players read beside it ---
    async def _translate_in(self, campaign: Campaign, actions: list[Action], extra: str, ctx: JobContext,
                            notes: list[str]) -> tuple[list[Action], str]:
        if not self.translation.needed(campaign.language):
            return actions, extra
        glossary = await self.store.glossary(campaign.id)
        done: dict[int, str] = {}
        try:
            for action in actions:
                if action.original is None:
                    done[action.id] = await self.translation.to_model(action.text, campaign.language, glossary,
                                                                      ctx.generate)
            if extra.strip():
                extra = await self.translation.to_model(extra, campaign.language, glossary, ctx.generate)
        except Unavailable as exc:  # the turn goes on with what is untranslated
            self._note(campaign, exc, notes)
        if done:
            await self.store.translate_actions(done)
        return [dataclasses.replace(a, text=done[a.id], original=a.text) if a.id in done else a
                for a in actions], extra

    async def _translate_out(self, campaign: Campaign, narration: str, ctx: JobContext,
                             notes: list[str]) -> str | None:
        if not self.translation.needed(campaign.language):
            return None
        try:
            return defuse_mentions(await self.translation.to_players(
                narration, campaign.language, await self.store.glossary(campaign.id), ctx.generate))
        except Unavailable as exc:
            self._note(campaign, exc, notes)
            return None

    def _note(self, campaign: Campaign, error: Unavailable, notes: list[str]) -> None:
        log.warning("translation for campaign %s failed: %s", campaign.id, error)
        note = self.translation.outage_note(campaign.id, error)
        if note:
            notes.append(note)

    async def _narrate(self, campaign: Campaign, turns: Sequence[Turn], actions: Sequence[Action], extra: str,
                       ctx: JobContext, may_defer: bool = True) -> tuple[str, BuiltPrompt, PromptMemory]:
        settings = self.campaign_settings(campaign)
        budget = self.settings.context_tokens - settings.generation.max_new_tokens
        cards = triggered_cards(await self.store.cards(campaign.id), mentions(actions, extra, turns))

        def build(recalled: list[Recalled], window: list[Turn]) -> BuiltPrompt:
            return build_prompt(campaign, memories=recalled, turns=window, actions=actions, extra=extra,
                                render=self.backend.render, count_tokens=self.backend.count_tokens, budget=budget,
                                action_limit=self.settings.action_max_chars, may_defer=may_defer, cards=cards)

        # Recall with what the players do now; the window and recall agree on the turns the prompt holds.
        built = await recall_within_budget(
            self.memory, campaign.id, turn_queries(actions, extra, turns, self.memory.chunk), turns,
            top_k=self.settings.top_k, min_score=self.settings.min_score, build=build)
        names = {a.author_name for a in actions} | {a.author_name for t in turns for a in t.actions}
        narration = posted_narration(await ctx.generate(built.rendered, settings.generation), names)
        if not narration and settings.generation.do_sample:  # it only played the players: one more draw
            ctx.restart_stream()
            narration = posted_narration(await ctx.generate(built.rendered, settings.generation), names)
        if not narration:
            raise Unavailable("the model wrote nothing this time; try /dm continue again")
        return narration, built, PromptMemory.of(built, turns, budget)

    async def _picture_prompt(self, job: Job, ctx: JobContext) -> PicturePrompt:
        """The current scene as an engine.pictures.scene.PicturePrompt: the text model says where it happens,
        the scene's words, the looks and the campaign's style say the rest."""
        campaign = await self.campaign(job.campaign_id)
        focus = str(job.payload.get("focus", "")).strip()[:200]
        if focus and self.translation.needed(campaign.language):  # the picture server reads English
            with contextlib.suppress(Unavailable):
                focus = await self.translation.to_model(focus, campaign.language,
                                                        await self.store.glossary(campaign.id), ctx.generate)
        turns = await self.store.recent_turns(campaign.id, 3)
        scene = story_text(turns)[-1500:] or campaign.premise
        if not scene and not focus:
            raise BadInput("there is no scene to paint yet: play a turn first, or give a focus")
        answer = await ctx.generate(self.backend.render(scene_prompt(scene or focus)), PICTURE_SETTINGS, stream=False)
        return compose_picture_prompt(clean_narration(answer, set()), focus=focus, style=campaign.style,
                                      turns=turns, premise=campaign.premise, looks=await self.store.looks(campaign.id))

    async def _summarise(self, campaign: Campaign, ctx: JobContext, *, force: bool) -> str | None:
        every = self.campaign_settings(campaign).summarize_every
        last_summarised = await self.store.last_summary_turn(campaign.id)
        turns = await self.store.turns_since(campaign.id, last_summarised)
        if not turns or (not force and (every == 0 or len(turns) < every)):
            return None
        summaries: list[str] = []
        try:
            for piece, text in self._summary_pieces(turns):
                if self.summarizer is not None:
                    summary = await self.summarizer.call(lambda s, t=text: s.summarize(t), timeout=300)
                else:
                    prompt = self.backend.render(summary_prompt(text))
                    settings = summary_settings(self.settings.summary_max_tokens)
                    summary = (await ctx.generate(prompt, settings, stream=False)).strip()
                if summary:
                    entry = await self.memory.summary_entry(summary, piece[0].number, piece[-1].number)
                    await self.store.add_memory(campaign.id, entry)  # a copy of an earlier one counts too
                    summaries.append(summary)
                else:  # the model had nothing to say about it: asking again at every turn would not help
                    await self.store.mark_summarised(campaign.id, piece[-1].number)
        except Exception:
            if force:
                raise
            log.warning("summary of campaign %s failed; the next turn tries again", campaign.id, exc_info=True)
            return None
        return "\n".join(summaries) or None

    def _summary_pieces(self, turns: Sequence[Turn]) -> list[tuple[Sequence[Turn], str]]:
        """The story since the last summary, in pieces whose summary prompt fits the model's context
        (a summarization model truncates its own input: one piece)."""
        if self.summarizer is not None:
            return [(turns, story_text(turns))]
        budget = self.settings.context_tokens - self.settings.summary_max_tokens
        count = self.backend.count_tokens
        room = budget - count(self.backend.render(summary_prompt("")))
        return summary_pieces(turns, lambda text: count(self.backend.render(summary_prompt(text))) <= budget,
                              count, room)


def posted_narration(text: str, player_names: set[str]) -> str:
    """A narration as the table sees it (and the story keeps it): the DM's lines only, whole sentences,
    in the DM's voice (no sentence in the first person outside quotes, none speaking for a player,
    unless nothing else is left), mentions defused; nothing when no word is left (a list's "9.")."""
    text = defuse_mentions(whole_sentences(keep_voice(clean_narration(text, player_names), player_names)))
    return text if any(char.isalpha() for char in text) else ""
