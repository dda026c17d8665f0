"""Quests as the DM reads them: one line per active quest ("The lost key (from Mirelda; reward: 20 gold): found
the cellar door"); the records themselves are the store's (engine/records.py's Quest)."""
from __future__ import annotations

from engine.errors import BadInput
from engine.records import Quest

TITLE_MAX_CHARS, FIELD_MAX_CHARS, STEP_MAX_CHARS, MAX_STEPS = 100, 80, 200, 30
STATUSES = ("active", "done", "failed")


def quest_line(quest: Quest) -> str:
    about = "; ".join(part for part in (f"from {quest.giver}" if quest.giver else "",
                                        f"reward: {quest.reward}" if quest.reward else "") if part)
    line = quest.title + (f" ({about})" if about else "")
    return line + (": " + "; ".join(quest.steps[-3:]) if quest.steps else "")  # the latest steps say where it stands


def checked(text: str, what: str, limit: int, *, required: bool = False) -> str:
    """A quest's text as typed: spaces tidied, within its limit; BadInput otherwise."""
    text = " ".join(text.split())
    if required and not text:
        raise BadInput(f"a quest needs a {what}")
    if len(text) > limit:
        raise BadInput(f"a quest's {what} may be at most {limit} characters")
    return text
