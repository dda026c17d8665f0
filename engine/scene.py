"""The picture prompt: the current scene condensed by the text model, plus the campaign's style and
the appearance notes of every named character in view, so characters look the same each time."""
from __future__ import annotations

import re
from typing import Mapping

from engine.generation import GenerationSettings
from engine.textgen.base import Prompt

PICTURE_INSTRUCTIONS = (
    "Describe the current scene of this role-playing story as one line of comma-separated visual "
    "details for an illustration: who is there, the place, the light, the mood. No sentences, no names of "
    "players, at most 40 words."
)
PICTURE_SETTINGS = GenerationSettings(max_new_tokens=60, do_sample=False, repetition_penalty=1.2)
MAX_PROMPT_CHARS = 900


def scene_prompt(scene: str, focus: str) -> Prompt:
    focus_line = f"\nFocus on: {focus}" if focus else ""
    return Prompt(PICTURE_INSTRUCTIONS, scene + focus_line, f"{scene}{focus_line}\n\nThe illustration shows:")


def compose_picture_prompt(description: str, *, focus: str, style: str, scene: str,
                           looks: Mapping[str, str]) -> str:
    """focus first (it steers), then the scene, the looks of characters named anywhere, the style."""
    description = " ".join(description.split()).strip(" ,.")
    seen = f"{scene} {focus} {description}".lower()
    named = [f"{name}: {look}" for name, look in looks.items()
             if re.search(rf"\b{re.escape(name.lower())}\b", seen)]
    parts = [p for p in (focus.strip(), description, *named, style.strip()) if p]
    prompt = ", ".join(parts)
    return prompt if len(prompt) <= MAX_PROMPT_CHARS else prompt[:MAX_PROMPT_CHARS].rsplit(",", 1)[0]
