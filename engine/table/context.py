"""What a turn's prompt holds from memory: recall and the recent window, agreeing on every turn.

Recall skips exactly the turns the window still holds after the token budget trimmed it, never more,
so a fact in a turn the budget dropped is recalled instead of falling between the two. The result is
kept with the turn, so players can see what the DM remembered (/dm memory last).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.memory import MemoryBank
from engine.table.prompt import BuiltPrompt
from engine.memory.recall import Query, Recalled
from engine.records import Turn


async def recall_within_budget(
    memory: MemoryBank, campaign_id: int, queries: Sequence[Query], turns: Sequence[Turn], *, top_k: int,
    min_score: float, build: Callable[[list[Recalled], list[Turn]], BuiltPrompt],
) -> BuiltPrompt:
    """The prompt `build` makes from the recent `turns` and what recall adds to them.

    Each round recalls past the window, builds, and if the budget dropped the oldest turns, recalls
    again past only those that fitted (the window only shrinks, so this ends; usually in one round).
    """
    probe = await memory.probe(campaign_id, queries) if top_k > 0 else None
    window = list(turns)
    while True:
        recalled = await memory.search(campaign_id, probe, top_k=top_k, min_score=min_score,
                                       recent_from_turn=window[0].number if window else None)
        built = build(recalled, window)
        if built.turns_used == len(window):
            return built
        window = window[len(window) - built.turns_used:]


@dataclass(frozen=True)
class RememberedEntry:
    id: int
    kind: str
    text: str  # as the prompt showed it, with the speaker's name
    turn_from: int | None
    turn_to: int | None
    similarity: float | None = None
    words: tuple[str, ...] = ()

    @classmethod
    def of(cls, recalled: Recalled) -> RememberedEntry:
        m = recalled.memory
        similarity = None if recalled.similarity is None else round(recalled.similarity, 3)
        return cls(m.id, m.kind, m.shown, m.turn_from, m.turn_to, similarity, recalled.words)

    def line(self) -> str:
        where = "" if self.turn_from is None else (
            f"turn {self.turn_from}" if self.turn_from == self.turn_to else f"turns {self.turn_from}-{self.turn_to}")
        why = [f"similarity {self.similarity:.2f}"] if self.similarity is not None else []
        if self.words:
            why.append("words: " + ", ".join(self.words))
        return f"#{self.id} ({', '.join([where, *why]) if where else ', '.join(why)}) {self.text}"


@dataclass(frozen=True)
class UsedCard:
    id: int
    key: str  # the key that was mentioned
    text: str

    def line(self) -> str:
        return f"#{self.id} (key: {self.key}) {self.text}"


@dataclass(frozen=True)
class PromptMemory:
    """What one turn's prompt held from memory: pinned facts, story cards, recalled entries, the recent turns."""
    pinned: tuple[RememberedEntry, ...]
    recalled: tuple[RememberedEntry, ...]
    window: tuple[int, ...]  # numbers of the recent turns that fitted in the prompt
    offered: tuple[int, ...]  # numbers of the recent turns the prompt could have held
    prompt_tokens: int
    budget: int
    cards: tuple[UsedCard, ...] = ()

    @classmethod
    def of(cls, built: BuiltPrompt, offered: Sequence[Turn], budget: int) -> PromptMemory:
        pinned = tuple(RememberedEntry.of(r) for r in built.memories if r.score is None)
        recalled = tuple(RememberedEntry.of(r) for r in built.memories if r.score is not None)
        cards = tuple(UsedCard(t.card.id, t.key, t.card.text) for t in built.cards)
        return cls(pinned, recalled, tuple(t.number for t in built.turns), tuple(t.number for t in offered),
                   built.tokens, budget, cards)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptMemory:
        entries = lambda items: tuple(RememberedEntry(**{**e, "words": tuple(e.get("words", ()))}) for e in items)
        return cls(entries(data.get("pinned", [])), entries(data.get("recalled", [])), tuple(data.get("window", [])),
                   tuple(data.get("offered", [])), int(data.get("prompt_tokens", 0)), int(data.get("budget", 0)),
                   tuple(UsedCard(**c) for c in data.get("cards", [])))

    def lines(self, turn_number: int) -> list[str]:
        """A plain-text account for the players (the cog and the terminal add their own markup)."""
        out = [f"Turn {turn_number}'s prompt: {self.prompt_tokens} of {self.budget} tokens."]
        out.append("Pinned facts:" if self.pinned else "Pinned facts: none")
        out += [f"  {e.line()}" for e in self.pinned]
        if self.cards:  # only when a key was mentioned: most turns use none
            out.append("Story cards:")
            out += [f"  {c.line()}" for c in self.cards]
        out.append("Recalled from memory:" if self.recalled else "Recalled from memory: nothing")
        out += [f"  {e.line()}" for e in self.recalled]
        if self.window:
            dropped = len(self.offered) - len(self.window)
            spans = f"turns {self.window[0]}-{self.window[-1]}" if len(self.window) > 1 else f"turn {self.window[0]}"
            out.append(f"Recent story: {spans}" + (f" ({dropped} older turn(s) did not fit the budget)" if dropped else ""))
        else:
            out.append("Recent story: none" + (" fitted the budget" if self.offered else ""))
        return out
