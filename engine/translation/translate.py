"""Players' language <-> the model's: markup and names protected, cached, and a circuit breaker.

The engine keeps the story and memories in the model's language, so recall works in one language.
Players' actions go in translated; narration comes out translated, sentence by sentence while it
streams when the provider is fast enough. When the provider fails, the caller goes on with the
untranslated text, the channel is told once per outage, and after a pause translation is tried again.
"""
from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from typing import Callable, Sequence

from engine.errors import BadInput, TranslatorUnavailable, Unavailable
from engine.translation.markup import complete_prefix, mask, paragraphs, pieces, unmask
from engine.translation.providers import Generate, Provider, language_problem

log = logging.getLogger(__name__)
PARAGRAPH_LIMIT = 1000  # characters per request for a provider that states no limit of its own
_WORDS = re.compile(r"[^\W\d_]", re.UNICODE)  # a letter: something worth translating


class _Uncached(Exception):
    """A look-up in the cache alone met a sentence the cache does not hold."""


def opening(text: str, chars: int) -> str:
    """The first whole sentences of `text` that hold at least `chars` characters (all of it when it
    is shorter): what a shortened line shows, cut where the per-sentence cache cuts."""
    if len(text) <= chars:
        return text
    out = ""
    for piece in pieces(text):
        if len(out) >= chars:
            break
        out += piece.text + piece.gap
    return out.rstrip()


class Translation:
    """Between the players' language and the model's: glossary terms kept, markup kept, cached, paused after failures."""
    def __init__(self, provider: Provider | None, model_language: str, *, cache_size: int = 1024,
                 failures_to_pause: int = 3, pause_s: float = 300.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.provider, self.model_language = provider, model_language.lower()
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()  # (from, to, masked text)
        self.failures_to_pause, self.pause_s = failures_to_pause, pause_s
        self._clock = clock or (lambda: time.monotonic())  # looked up at each call: test clocks apply
        self.failures, self._paused_until, self.last_error = 0, 0.0, ""
        self._told: set[int] = set()  # campaigns told about the current outage

    # --- what a campaign needs ---
    def needed(self, language: str) -> bool:
        return self.provider is not None and language.lower() != self.model_language

    @property
    def turns_only(self) -> bool:
        """Whether the provider needs the text model, which only a job has (the llm provider)."""
        return bool(getattr(self.provider, "turns_only", False))

    def check_language(self, language: str) -> None:
        """Refuse, when a campaign picks it, a code the translator cannot take: the alternative is a
        failed request every turn."""
        if self.needed(language) and (problem := language_problem(self.provider, language.lower())):
            raise BadInput(problem)

    def outside_turns(self, language: str) -> bool:
        """Whether text shown outside a turn (a page of memories) is translated for this campaign: it
        needs translation and the provider does without the text model, which only a turn's job holds."""
        return self.needed(language) and not self.turns_only

    def streams(self, language: str) -> bool:
        return self.needed(language) and bool(self.provider and self.provider.streams)

    async def to_model(self, text: str, language: str, glossary: dict[str, str],
                       generate: Generate | None = None) -> str:
        """A player's text in the model's language; names from the glossary become their translation.
        Whole paragraphs go at once: nothing streams here, and context makes better translations."""
        return await self.translate(text, language.lower(), self.model_language, glossary, generate, whole=True)

    async def to_players(self, text: str, language: str, glossary: dict[str, str],
                         generate: Generate | None = None) -> str:
        """The model's text in the players' language; the glossary applies backwards."""
        back = {target: source for source, target in glossary.items()}
        return await self.translate(text, self.model_language, language.lower(), back, generate)

    async def to_players_all(self, texts: Sequence[str], language: str, glossary: dict[str, str], *,
                             cached_only: bool = False) -> list[str] | None:
        """Texts shown outside a turn (stored in the model's language) in the players' language, as
        they are where `outside_turns` says no. One after another, so the breaker counts one failure:
        Unavailable when the translator fails. With `cached_only` nothing is asked of the translator:
        None unless the cache holds every sentence."""
        if not self.outside_turns(language):
            return list(texts)
        back = {target: source for source, target in glossary.items()}
        try:
            return [await self.translate(text, self.model_language, language.lower(), back, cached_only=cached_only)
                    for text in texts]
        except _Uncached:
            return None

    def live(self, language: str, glossary: dict[str, str]) -> "LiveTranslation | None":
        """For a narration being written; None when the campaign needs no translation."""
        return LiveTranslation(self, language, glossary) if self.needed(language) else None

    def outage_note(self, campaign_id: int, error: Exception) -> str | None:
        """What to tell a channel when its text went untranslated: once per outage, then nothing."""
        if campaign_id in self._told:
            return None
        self._told.add(campaign_id)
        return f"⚠️ translation is unavailable ({error}); this goes untranslated, and it is tried again later"

    @staticmethod
    def untranslated_note(error: Exception) -> str:
        """The line under text shown as stored because the translator failed: it names the translator."""
        return f"⚠️ Shown untranslated, as stored: the translator is unavailable ({error})."

    # --- the work ---
    async def translate(self, text: str, source: str, target: str, terms: dict[str, str],
                        generate: Generate | None = None, *, whole: bool = False, cached_only: bool = False) -> str:
        """`text` sentence by sentence (as a streamed narration is shown, so the cache serves the final
        text), or with `whole`, paragraph by paragraph. With `cached_only`, _Uncached where the cache
        lacks a sentence."""
        if self.provider is None or source == target or not text.strip():
            return text
        if not self.provider.streams:  # one request for the whole text: a model call is costly
            return await self._unit(text, source, target, terms, generate, cached_only)
        parts = pieces(text)
        if whole:
            parts = paragraphs(parts, getattr(self.provider, "LIMIT", PARAGRAPH_LIMIT))
        out = []
        for piece in parts:
            translated = piece.text if piece.verbatim else await self._unit(piece.text, source, target, terms,
                                                                            generate, cached_only)
            out.append(translated + piece.gap)
        return "".join(out)

    async def _unit(self, text: str, source: str, target: str, terms: dict[str, str],
                    generate: Generate | None, cached_only: bool = False) -> str:
        masked = mask(text, terms)
        if not _WORDS.search(re.sub(r"⟦\s*\d+\s*⟧", "", masked.text)):
            return unmask(masked.text, masked)  # only names, links, markup: nothing to translate
        key = (source, target, masked.text)
        raw = self._cache.get(key)
        if raw is None:
            if cached_only:
                raise _Uncached
            raw = await self._call(masked.text, source, target, generate)
            if self.cache_size:
                self._cache[key] = raw
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return unmask(raw, masked)

    async def _call(self, text: str, source: str, target: str, generate: Generate | None) -> str:
        assert self.provider is not None
        if self._clock() < self._paused_until:
            raise TranslatorUnavailable(f"translation is paused after {self.failures} failures: {self.last_error}")
        if problem := language_problem(self.provider, source) or language_problem(self.provider, target):
            raise TranslatorUnavailable(problem)  # this campaign's setting, not an outage: the breaker is not told
        try:
            raw = await self.provider.translate(text, source, target, generate)
            if not isinstance(raw, str) or not raw.strip() or len(raw) > 10 * len(text) + 200:
                raise Unavailable(f"the {self.provider.name} translator answered with no usable translation")
        except Exception as exc:
            # The translator's own error, whatever the provider raised: callers tell it apart from the DM's.
            error = TranslatorUnavailable(str(exc) if isinstance(exc, Unavailable) else
                                          f"the {self.provider.name} translator failed")
            if not isinstance(exc, Unavailable):
                log.exception("translation provider %s failed unexpectedly", self.provider.name)
            self._failed(str(error))
            raise error from None
        if self.failures or self._told:
            log.info("translation works again")
        self.failures, self._paused_until = 0, 0.0
        self._told.clear()
        return raw

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        if self.failures >= self.failures_to_pause:
            self._paused_until = self._clock() + self.pause_s
            log.warning("translation paused for %.0f s after %d failures: %s", self.pause_s, self.failures, reason)


class LiveTranslation:
    """A narration that is still being written, translated one finished sentence at a time."""

    def __init__(self, translation: Translation, language: str, glossary: dict[str, str]) -> None:
        self.translation, self.language, self.glossary = translation, language, glossary
        self.source = ""  # the finished sentences translated so far, as written
        self.shown = ""
        self.failed = False

    async def update(self, text: str) -> str:
        """The translation of every finished sentence of `text` (a narration's text so far); nothing
        from a provider too slow for that (the text model, busy writing), until the turn is done."""
        if not self.translation.streams(self.language):
            return ""
        if not text.startswith(self.source):  # the stream restarted (the model worker was restarted)
            self.source, self.shown = "", ""
        end = complete_prefix(text)
        if self.failed or end <= len(self.source):
            return self.shown
        try:
            self.shown += await self.translation.to_players(text[len(self.source):end], self.language, self.glossary)
        except Unavailable:
            self.failed = True  # the finished turn says why; until then the text so far stays
        self.source = text[:end]
        return self.shown
