"""/dm recap: the story so far in a few sentences, from the campaign's summaries and its last turns, told in the
players' language (a player who missed a session reads it instead of the whole channel)."""
from __future__ import annotations

from engine.errors import BadInput
from engine.jobs import Job, JobContext
from engine.memory.summarize import story_text, summary_settings
from engine.store import Store
from engine.table.edits import running_campaign
from engine.table.kept_text import posted_narration
from engine.table.languages import TableLanguage
from engine.table.settings import NarratorSettings
from engine.textgen.base import Prompt, TextBackend

RECAP_INSTRUCTIONS = ("Retell the story of this role-playing campaign so far for a player who missed the last "
                      "session: three or four sentences in the past tense, naming the characters, where they are "
                      "now and what they are about to do. No new events.")
RECAP_TURNS, RECAP_MAX_TOKENS = 4, 160


class Recaps:
    """The recap job: summaries (oldest dropped first to fit) and the last turns, retold by the text model."""

    def __init__(self, store: Store, backend: TextBackend, language: TableLanguage, settings: NarratorSettings) -> None:
        self.store, self.backend, self.language, self.settings = store, backend, language, settings

    async def recap(self, job: Job, ctx: JobContext) -> str:
        campaign = await running_campaign(self.store, job.campaign_id)
        turns = await self.store.recent_turns(campaign.id, RECAP_TURNS)
        if not turns:
            raise BadInput("nothing has happened yet: the story starts with the first /dm continue")
        summaries = [m.text for m in sorted(await self.store.memories(campaign.id), key=lambda m: m.turn_from or 0)
                     if m.kind == "summary" and (m.turn_to or 0) < turns[0].number]
        budget = self.settings.context_tokens - RECAP_MAX_TOKENS
        while True:
            earlier = f"Earlier: {' '.join(summaries)}\n\n" if summaries else ""
            text = f"The campaign: {campaign.premise}\n\n{earlier}Lately:\n{story_text(turns)}"
            prompt = self.backend.render(Prompt(RECAP_INSTRUCTIONS, text, f"{RECAP_INSTRUCTIONS}\n\n{text}\n\nSo far:"))
            if self.backend.count_tokens(prompt) <= budget or not (summaries or len(turns) > 1):
                break
            if summaries:
                summaries.pop(0)
            else:
                turns = turns[1:]
        told = (await ctx.generate(prompt, summary_settings(RECAP_MAX_TOKENS), stream=False)).strip()
        told = posted_narration(told, {a.author_name for t in turns for a in t.actions})
        if not told:
            raise BadInput("the DM could not retell the story this time; try again")
        language = await self.language.for_turn(campaign, ctx.generate)
        notes: list[str] = []
        return await language.narration_out(told, notes) or told
