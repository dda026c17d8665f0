"""Summaries for memory: by the text model itself (default), or by a summarization pipeline model
(the seed used knkarthick/MEETING_SUMMARY, a BART) in its own worker thread."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.records import Turn
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


def summary_pieces(turns: Sequence[Turn], fits: Callable[[str], bool],
                   count: Callable[[str], int], room: int) -> list[tuple[Sequence[Turn], str]]:
    """The story in consecutive pieces of turns whose summary prompt `fits`, to be summarised one by
    one. Turns join a piece while their token `count`s sum within `room` (so a long story costs one
    count per turn, not one per prefix); a single turn too long on its own keeps its later part."""
    costs = [count(story_text([turn])) + 1 for turn in turns]
    pieces: list[tuple[Sequence[Turn], str]] = []
    start = 0
    while start < len(turns):
        end, used = start + 1, costs[start]
        while end < len(turns) and used + costs[end] <= room:
            used += costs[end]
            end += 1
        while end - start > 1 and not fits(story_text(turns[start:end])):
            end -= 1
        text = story_text(turns[start:end])
        while not fits(text) and len(text) > 200:
            text = "…" + text[len(text) // 4:]  # one long turn: keep its later three quarters, and again
        pieces.append((turns[start:end], text))
        start = end
    return pieces


def summary_settings(max_tokens: int) -> GenerationSettings:
    # Summaries want the likeliest words, not creative ones.
    return GenerationSettings(max_new_tokens=max_tokens, do_sample=False, repetition_penalty=1.1)


class Seq2SeqSummarizer:
    """What pipeline("summarization") did, which transformers 5 removed: a seq2seq model's generate."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        # A tokenizer without a known length says "very large": the model's positions are the limit.
        self.max_input = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 1 << 30))

    def __call__(self, text: str, max_new_tokens: int, truncation: bool = True) -> list[dict[str, str]]:
        import torch

        enc = self.tokenizer([text], return_tensors="pt", truncation=truncation, max_length=self.max_input,
                             return_token_type_ids=False)  # transformers 4 adds them; BART's generate refuses them
        with torch.inference_mode():
            out = self.model.generate(**enc.to(self.model.device), max_new_tokens=max_new_tokens)
        return [{"summary_text": self.tokenizer.decode(out[0], skip_special_tokens=True)}]


class PipelineSummarizer:
    """A summarization model (a BART, like the seed's); runs inside a ModelWorker thread."""

    def __init__(self, pipe, max_tokens: int) -> None:
        self.pipe, self.max_tokens = pipe, max_tokens

    @classmethod
    def load(cls, model: str, max_tokens: int, device: str = "cpu") -> "PipelineSummarizer":
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        path = Path(model).expanduser()
        if not path.is_dir() and (model.startswith((".", "/", "~")) or model.count("/") != 1):
            raise Unavailable(f"summarizer model not found: {model}")
        location = str(path) if path.is_dir() else model
        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            seq2seq = AutoModelForSeq2SeqLM.from_pretrained(location)
        except Exception as exc:
            raise Unavailable(f"cannot load summarizer {model}: {type(exc).__name__}: {exc}") from exc
        return cls(Seq2SeqSummarizer(seq2seq.to(device).eval(), tokenizer), max_tokens)

    def summarize(self, text: str) -> str:
        out = self.pipe(text, max_new_tokens=self.max_tokens, truncation=True)
        return out[0]["summary_text"].strip()
