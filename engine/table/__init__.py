"""The table: the turn pipeline, the prompt, narration cleaning, rounds, story cards, edits outside a turn."""
from engine.table.narration import defuse_mentions
from engine.table.narrator import Narrator, NarratorSettings

__all__ = ["Narrator", "NarratorSettings", "defuse_mentions"]
