"""The picture_prompt job: the current scene as a picture prompt (engine/pictures/scene.py). The text
model says only where the scene happens; the scene's words, the looks and the campaign's style say the rest."""
from __future__ import annotations

from engine.errors import BadInput
from engine.jobs import Job, JobContext
from engine.memory.summarize import story_text
from engine.pictures.scene import PICTURE_SETTINGS, PicturePrompt, compose_picture_prompt, scene_prompt
from engine.store import Store
from engine.table.edits import running_campaign
from engine.table.languages import TableLanguage
from engine.table.narration import clean_narration
from engine.textgen.base import TextBackend

FOCUS_MAX_CHARS = 200
SCENE_CHARS = 1500  # the end of the story the picture is of


class ScenePrompts:
    """Builds a picture prompt for a campaign's current scene, in the picture server's language."""

    def __init__(self, store: Store, backend: TextBackend, language: TableLanguage) -> None:
        self.store, self.backend, self.language = store, backend, language

    async def picture_prompt(self, job: Job, ctx: JobContext) -> PicturePrompt:
        campaign = await running_campaign(self.store, job.campaign_id)
        turn_language = await self.language.for_turn(campaign, ctx.generate)
        # The picture server reads English.
        focus = await turn_language.to_model(str(job.payload.get("focus", "")).strip()[:FOCUS_MAX_CHARS])
        turns = await self.store.recent_turns(campaign.id, 3)
        scene = story_text(turns)[-SCENE_CHARS:] or campaign.premise
        if not scene and not focus:
            raise BadInput("there is no scene to paint yet: play a turn first, or give a focus")
        answer = await ctx.generate(self.backend.render(scene_prompt(scene or focus)), PICTURE_SETTINGS, stream=False)
        return compose_picture_prompt(clean_narration(answer, set()), focus=focus, style=campaign.style,
                                      turns=turns, premise=campaign.premise, looks=await self.store.looks(campaign.id))
