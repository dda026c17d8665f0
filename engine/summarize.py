"""Summaries for memory: by the text model itself (default), or by a summarization pipeline model
(the seed used knkarthick/MEETING_SUMMARY, a BART) in its own worker thread."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.store import Turn
from engine.textgen.base import Prompt

log = logging.getLogger(__name__)

SUMMARY_INSTRUCTIONS = (
    "Summarise this part of a role-playing story in two to four sentences. Keep every name, place, "
    "number, item and promise exactly as written."
)


def story_text(turns: Sequence[Turn]) -> str:
    lines = []
    for turn in turns:
        lines += [f"{a.author_name}: {a.text}" for a in turn.actions]
        lines.append(f"DM: {turn.narration}")
    return "\n".join(lines)


def summary_prompt(text: str) -> Prompt:
    return Prompt(SUMMARY_INSTRUCTIONS, text, f"{text}\n\nIn short:")


def summary_settings(max_tokens: int) -> GenerationSettings:
    # Summaries want the likeliest words, not creative ones.
    return GenerationSettings(max_new_tokens=max_tokens, do_sample=False, repetition_penalty=1.1)


class PipelineSummarizer:
    """A transformers `summarization` pipeline; runs inside a ModelWorker thread."""

    def __init__(self, pipe, max_tokens: int) -> None:
        self.pipe, self.max_tokens = pipe, max_tokens

    @classmethod
    def load(cls, model: str, max_tokens: int, device: str = "cpu") -> "PipelineSummarizer":
        from transformers import pipeline

        if not Path(model).expanduser().is_dir() and model.count("/") != 1:
            raise Unavailable(f"summarizer model not found: {model}")
        try:
            pipe = pipeline("summarization", model=str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model,
                            device=-1 if device == "cpu" else device)
        except Exception as exc:
            raise Unavailable(f"cannot load summarizer {model}: {type(exc).__name__}: {exc}") from exc
        return cls(pipe, max_tokens)

    def summarize(self, text: str) -> str:
        out = self.pipe(text, max_new_tokens=self.max_tokens, truncation=True)
        return out[0]["summary_text"].strip()
