"""What every text backend offers the engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from engine.generation import GenerationSettings

# Called from the worker thread: (index of the request in the batch, new text).
TokenSink = Callable[[int, str], None]
# Polled once per generated token: True stops that request (it was cancelled).
StopCheck = Callable[[int], bool]


@dataclass(frozen=True)
class Prompt:
    """One prompt in both shapes: chat messages for instruct models, plain text for the GPT-2 family."""

    system: str
    user: str
    continuation: str


@dataclass(frozen=True)
class GenRequest:
    text: str  # already rendered for this backend
    settings: GenerationSettings


class TextBackend(Protocol):
    name: str
    can_batch: bool

    def render(self, prompt: Prompt) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]: ...
