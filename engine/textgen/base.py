"""What every text backend offers the engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from engine.generation import GenerationSettings
from engine.textgen.voice import Voice

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
    voice: Voice | None = None  # a narration: kept in the DM's voice as it is drawn (where the backend can)
    # Generation ends once this holds for the reply so far (a roll marker just written); the runner asks it
    # after each piece, so every backend that streams honours it.
    until: Callable[[str], bool] | None = None


class TextBackend:
    """What every text backend offers the engine, and the capabilities it declares (as simonw/llm's models
    declare theirs): the runner asks these, never the backend's type.

    - can_batch: generate_batch takes several requests at once (one per call otherwise);
    - concurrent: a server that schedules by itself: the runner calls `stream` for each request at once,
      on the event loop, instead of generate_batch on the model's thread.
    """

    name: str = "text backend"
    can_batch: bool = False
    concurrent: bool = False

    def render(self, prompt: Prompt) -> str:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def extend(self, rendered: str, written: str) -> str:
        """The prompt to go on from a reply written so far (after a roll made in its place)."""
        return rendered + written

    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]:
        """On the model's thread: every request's whole text; on_token gets the pieces as they come."""
        raise NotImplementedError

    async def stream(self, request: GenRequest, on_piece: Callable[[str], None],
                     should_stop: Callable[[], bool]) -> str:
        """On the event loop, for a `concurrent` backend: one reply, piece by piece to on_piece."""
        raise NotImplementedError(f"{self.name} does not stream on the event loop (it is not concurrent)")
