"""Every few turns the story since the last summary becomes a memory: by the summarisation model when
there is one, else by the text model, in pieces whose prompt fits its context."""
from __future__ import annotations

import logging
from typing import Sequence

from engine.jobs import JobContext, ModelWorker
from engine.memory.bank import MemoryBank
from engine.memory.summarize import PipelineSummarizer, story_text, summary_pieces, summary_prompt, summary_settings
from engine.records import Campaign, Turn
from engine.store import Store
from engine.textgen.base import TextBackend

log = logging.getLogger(__name__)


class Summaries:
    """Writes a campaign's summaries into memory and marks how far the story is summarised."""

    def __init__(self, store: Store, memory: MemoryBank, backend: TextBackend, *, context_tokens: int,
                 summary_max_tokens: int, summarizer: ModelWorker[PipelineSummarizer] | None = None) -> None:
        self.store, self.memory, self.backend, self.summarizer = store, memory, backend, summarizer
        self.context_tokens, self.summary_max_tokens = context_tokens, summary_max_tokens

    async def summarise(self, campaign: Campaign, ctx: JobContext, *, every: int, force: bool) -> str | None:
        """Summarise when `every` turns wait for it (or at once with `force`); the new summaries' text.
        A failure without `force` is logged: the next turn tries again."""
        last_summarised = await self.store.last_summary_turn(campaign.id)
        turns = await self.store.turns_since(campaign.id, last_summarised)
        if not turns or (not force and (every == 0 or len(turns) < every)):
            return None
        summaries: list[str] = []
        try:
            for piece, text in self.pieces(turns):
                if self.summarizer is not None:
                    summary = await self.summarizer.call(lambda s, t=text: s.summarize(t), timeout=300)
                else:
                    prompt = self.backend.render(summary_prompt(text))
                    settings = summary_settings(self.summary_max_tokens)
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

    def pieces(self, turns: Sequence[Turn]) -> list[tuple[Sequence[Turn], str]]:
        """The story since the last summary, in pieces whose summary prompt fits the model's context
        (a summarization model truncates its own input: one piece)."""
        if self.summarizer is not None:
            return [(turns, story_text(turns))]
        budget = self.context_tokens - self.summary_max_tokens
        count = self.backend.count_tokens
        room = budget - count(self.backend.render(summary_prompt("")))
        return summary_pieces(turns, lambda text: count(self.backend.render(summary_prompt(text))) <= budget,
                              count, room)
