"""A small, real TextBackend for tests: scripted replies, word-by-word streaming, injectable failures.

It implements the TextBackend protocol (engine/textgen/base.py) without a model: each request's reply
is `reply_for(text, settings)` (by default `max_new_tokens` words derived from the prompt), emitted one
word per step for every row of the batch at once, like a batched model would, with `token_delay`
seconds of `time.sleep` per step on the worker thread. `should_stop(i)` is polled before every token.
Every call is recorded in `calls` (texts, settings, the rows that were stopped, the thread it ran on).
Import it by module name (`from scripted_backend import ScriptedBackend`), never as `tests.x`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt, StopCheck, TextBackend, TokenSink


def scripted_words(text: str, settings: GenerationSettings) -> list[str]:
    """The default reply: `max_new_tokens` words that name the prompt, so every row is recognisable."""
    return [f"{text}#{k}" for k in range(settings.max_new_tokens)]


def scripted_reply(text: str, settings: GenerationSettings) -> str:
    """The whole text ScriptedBackend produces for this request when nothing stops it."""
    return " ".join(scripted_words(text, settings))


@dataclass
class BatchCall:
    """One generate_batch call, as the backend saw it."""

    texts: list[str]
    settings: list[GenerationSettings]
    thread: str
    stopped: set[int] = field(default_factory=set)  # rows whose should_stop turned True
    outputs: list[str] = field(default_factory=list)


class Die(BaseException):
    """Not an Exception: it takes the model worker's thread down, like a crash in native code."""


class ScriptedBackend(TextBackend):
    name = "scripted"

    def __init__(
        self, *, can_batch: bool = True, token_delay: float = 0.002,
        reply_for: Callable[[str, GenerationSettings], list[str]] = scripted_words,
    ) -> None:
        self.can_batch = can_batch
        self.token_delay = token_delay
        self.reply_for = reply_for
        self.calls: list[BatchCall] = []
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()

    # --- test controls ---
    def fail_next(self, error: BaseException) -> None:
        """The next generate_batch call (after being recorded) raises `error`; queue several for several calls."""
        with self._lock:
            self._failures.append(error)

    @property
    def call_sizes(self) -> list[int]:
        return [len(call.texts) for call in self.calls]

    # --- the TextBackend protocol ---
    def render(self, prompt: Prompt) -> str:
        return f"{prompt.system}\n{prompt.user}\n{prompt.continuation}".strip()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]:
        if not self.can_batch and len(requests) != 1:
            raise AssertionError(f"can_batch=False, but generate_batch got {len(requests)} requests")
        call = BatchCall([r.text for r in requests], [r.settings for r in requests], threading.current_thread().name)
        with self._lock:
            self.calls.append(call)
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise failure
        words = [self.reply_for(r.text, r.settings) for r in requests]
        outputs = [""] * len(requests)
        active = set(range(len(requests)))
        step = 0
        while active:
            for i in sorted(active):
                if should_stop(i):
                    call.stopped.add(i)
                    active.discard(i)
                elif step >= len(words[i]):
                    active.discard(i)
                else:
                    piece = words[i][step] if step == 0 else " " + words[i][step]
                    outputs[i] += piece
                    on_token(i, piece)
            step += 1
            if active and self.token_delay:
                time.sleep(self.token_delay)
        call.outputs = outputs
        return outputs
