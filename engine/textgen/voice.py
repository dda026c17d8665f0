"""The DM's voice at generation time: while the model writes a narration, first-person words outside quoted
speech and a colon after a player's name at a line start ("Bram:") cannot be drawn. The cleaning after the
fact (engine/table/narration.py) stays as the safety net; this keeps the model from needing it.

Backends with logits processors use VoiceGuard (transformers, llama.cpp); a model server gets the prompt only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from engine.text import inside_quotes

# The words of a narrator speaking of itself; "mine" is left out (far more often a mine in a fantasy story).
_FIRST_PERSON = re.compile(r"(?:I|(?i:me|my|myself|we|us|our|ours|ourselves))(?:['’]\w*)?")
_LIST_MARK = re.compile(r"^\s*[*_]*(?:\d+[.)]\s*)?[*_]*")


@dataclass(frozen=True)
class Voice:
    """Who the narrator must not speak for: the players' names (the DM narrates in the second or third person)."""
    player_names: tuple[str, ...] = ()


class VoiceGuard:
    """The tokens a narration must not draw next, given what it has written so far. Built once per model
    from its vocabulary (each token's text as decoded alone)."""

    def __init__(self, pieces: Iterable[tuple[int, str]]) -> None:
        self.spaced: list[int] = []  # " I", " my", "\nWe": a first-person word starting with the token
        self.bare: list[int] = []  # "I", "my": the same without a space, banned only at a word's start
        self.colons: list[int] = []  # ":", ":**": what turns a name into a speaker's label
        for token, text in pieces:
            word = text.lstrip(" \n\t")
            if _FIRST_PERSON.fullmatch(word):
                (self.spaced if word != text else self.bare).append(token)
            elif text.lstrip("*_ ").startswith(":"):
                self.colons.append(token)

    def banned(self, written: str, voice: Voice) -> list[int]:
        """What the next token must not be after `written` (the narration so far)."""
        banned: list[int] = []
        if not inside_quotes(written):
            banned += self.spaced
            if not written or not (written[-1].isalnum() or written[-1] in "'’-"):
                banned += self.bare
        line = _LIST_MARK.sub("", written[written.rfind("\n") + 1:]).rstrip("*_ ")
        if line and line in voice.player_names:
            banned += self.colons
        return banned


def vocabulary(size: int, decode: Callable[[int], str]) -> list[tuple[int, str]]:
    """Every token id with its text as decoded alone (undecodable pieces of a character come out empty)."""
    return [(token, decode(token)) for token in range(size)]
