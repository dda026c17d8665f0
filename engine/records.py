"""What the store keeps, as plain frozen records: campaigns, players' actions, turns, memories."""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    channel_id: int
    name: str
    premise: str
    style: str
    language: str
    settings: dict
    active: bool
    created: float


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    campaign_id: int
    author_id: int
    author_name: str
    text: str
    created: float
    turn_id: int | None
    original: str | None = None  # as the player wrote it, when `text` is its translation
    secret: bool = False  # a secret roll: shown to its roller and the admins only

    @property
    def written(self) -> str:
        return self.original if self.original is not None else self.text


@dataclass(frozen=True, slots=True)
class Turn:
    id: int
    campaign_id: int
    number: int
    narration: str
    actions: tuple[Action, ...]
    created: float
    shown: str | None = None  # the narration as posted, when translated
    effects: dict | None = None  # what its markers did: engine/game/ledger.py's record, the rolls it asked for

    @property
    def posted(self) -> str:
        return self.shown if self.shown is not None else self.narration


@dataclass(frozen=True, slots=True)
class Card:
    """A story card: lore that enters the prompt when one of its keys is mentioned."""
    id: int
    campaign_id: int
    keys: tuple[str, ...]  # as written, and in the model's language where translated
    text: str  # in the model's language
    written: str  # as the admin wrote it
    created: float


@dataclass(frozen=True, slots=True)
class Quest:
    """A quest the table follows: active ones go into the prompt; done and failed ones stay in the record."""
    id: int
    campaign_id: int
    title: str
    giver: str
    reward: str
    status: str  # active | done | failed
    steps: tuple[str, ...]
    created: float
    updated: float


@dataclass(frozen=True, slots=True, eq=False)
class NewMemory:
    kind: str  # "exact", "summary" or "fact"
    text: str
    vector: np.ndarray | None
    embedder: str
    turn_from: int | None = None  # turn numbers; None in commit_turn means "this turn"
    turn_to: int | None = None
    pinned: bool = False
    speaker: str | None = None  # who said it: shown beside the text in prompts, never embedded


@dataclass(frozen=True, slots=True, eq=False)
class Memory:
    id: int
    campaign_id: int
    kind: str
    text: str
    vector: np.ndarray | None
    embedder: str
    turn_from: int | None
    turn_to: int | None
    pinned: bool
    created: float
    speaker: str | None = None

    @property
    def shown(self) -> str:
        """The entry as the prompt and the players see it: with its speaker's name."""
        return f"{self.speaker}: {self.text}" if self.speaker else self.text


_NOT_WORDS = re.compile(r"[\W_]+")


def normalised(text: str) -> str:
    """Text compared for sameness: letter case, accents' forms, punctuation and spacing do not count."""
    return _NOT_WORDS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def memory_key(text: str, speaker: str | None, pinned: bool | int) -> str:
    """The content hash that keeps a campaign from storing one memory twice (pinned facts apart)."""
    key = f"{'fact' if pinned else 'story'}\x1f{normalised(speaker or '')}\x1f{normalised(text)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def campaign_from_row(row: Sequence[Any]) -> Campaign:
    return Campaign(*row[:6], json.loads(row[6]), bool(row[7]), row[8])


def memory_from_row(row: Sequence[Any]) -> Memory:
    vector = None if row[4] is None else np.frombuffer(row[4], dtype=np.float32)
    return Memory(*row[:4], vector, *row[5:8], bool(row[8]), row[9], row[10])


def vector_blob(vector: np.ndarray | None) -> tuple[bytes | None, int | None]:
    if vector is None:
        return None, None
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"a memory vector must be one-dimensional, not of shape {array.shape}")
    return array.tobytes(), int(array.shape[0])
