"""Job kinds to their handlers: the one place that says which part of the table does which job."""
from __future__ import annotations

from typing import Any, Mapping

from engine.errors import BadInput
from engine.game.ledger import revert
from engine.jobs import Job, JobContext
from engine.jobs.job import JOB_KINDS
from engine.jobs.runner import Handler
from engine.memory.summaries import Summaries
from engine.store import Store
from engine.table.edits import running_campaign
from engine.table.narrator import Narrator
from engine.table.recap import Recaps
from engine.table.scene_prompts import ScenePrompts


class JobTable:
    """The runner's one handler: it looks the job's kind up in the table."""

    def __init__(self, store: Store, narrator: Narrator, scenes: ScenePrompts, summaries: Summaries,
                 recaps: Recaps) -> None:
        self.store, self.summaries = store, summaries
        self.handlers: Mapping[str, Handler] = {
            "turn": narrator.turn,
            "retry": narrator.retry,
            "undo": self._undo,  # a job too, so it waits for the channel's running turn instead of racing it
            "summary": self._summary,
            "picture_prompt": scenes.picture_prompt,
            "recap": recaps.recap,
        }
        assert set(self.handlers) == set(JOB_KINDS), "every job kind has a handler"

    async def __call__(self, job: Job, ctx: JobContext) -> Any:
        handler = self.handlers.get(job.kind)
        if handler is None:
            raise BadInput(f"the table does not do {job.kind} jobs")
        return await handler(job, ctx)

    async def _undo(self, job: Job, ctx: JobContext) -> Any:
        campaign = await running_campaign(self.store, job.campaign_id)
        return await self.store.undo_last_turn(campaign.id, revert=revert)  # what its markers did is taken back

    async def _summary(self, job: Job, ctx: JobContext) -> str | None:
        campaign = await running_campaign(self.store, job.campaign_id)
        return await self.summaries.summarise(campaign, ctx, every=0, force=True)
