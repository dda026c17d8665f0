"""The engine's small error hierarchy; the Discord layer maps each to a friendly message."""
from __future__ import annotations


class EngineError(Exception):
    """Base class: the message is safe to show to a user."""


class BadInput(EngineError):
    """The request itself is wrong (empty action, unknown campaign, bad setting)."""


class Busy(EngineError):
    """A queue is full; try again later."""

    def __init__(self, message: str, queue_length: int) -> None:
        super().__init__(message)
        self.queue_length = queue_length


class Unavailable(EngineError):
    """A model or a remote service cannot serve right now."""


class PicturesUnavailable(Unavailable):
    """The picture server cannot paint right now (the Dungeon Master itself is fine)."""


class TranslatorUnavailable(Unavailable):
    """The translator cannot translate right now (the Dungeon Master itself is fine)."""


class Cancelled(EngineError):
    """The job was cancelled before it finished."""
