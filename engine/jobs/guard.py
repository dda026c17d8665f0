"""The one check every generate call passes: a prompt and its reply must fit the model's context.

Callers build prompts within their budget (prompt.py, the summary pieces); this guard is what makes
sure no prompt, of today or of a future feature, reaches the model past `context_tokens` and holds
the one model worker for minutes on text it cannot read.
"""
from __future__ import annotations

from typing import Callable

from engine.errors import BadInput
from engine.generation import GenerationSettings


class PromptGuard:
    def __init__(self, count_tokens: Callable[[str], int], context_tokens: int) -> None:
        self.count_tokens, self.context_tokens = count_tokens, context_tokens
        self.largest = 0  # the largest prompt + reply let through, in tokens (for tests and benchmarks)

    def check(self, text: str, settings: GenerationSettings) -> None:
        needed = self.count_tokens(text) + settings.max_new_tokens
        if needed > self.context_tokens:
            raise BadInput(f"this needs {needed} tokens, more than the model's {self.context_tokens} "
                           "(llm.context_tokens); nothing was sent to the model")
        self.largest = max(self.largest, needed)
