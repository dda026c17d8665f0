"""The table: the turn pipeline, the prompt, narration cleaning, rounds, story cards, edits outside a turn."""
from engine.table.edits import CampaignEdits
from engine.table.job_table import JobTable
from engine.table.languages import TableLanguage
from engine.table.narration import defuse_mentions
from engine.table.narrator import Narrator, TurnResult
from engine.table.scene_prompts import ScenePrompts
from engine.table.settings import CampaignSettings, NarratorSettings

__all__ = ["CampaignEdits", "CampaignSettings", "JobTable", "Narrator", "NarratorSettings", "ScenePrompts",
           "TableLanguage", "TurnResult", "defuse_mentions"]
