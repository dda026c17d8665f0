"""Jobs and their handles: plain data in, streamed text and a result (or an error) out."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from engine.errors import Cancelled

View = Callable[[str], Awaitable[str]]  # the text so far -> what the table is shown of it

# undo is a job too, so it waits for the channel's running turn (and its summary) instead of racing it.
JOB_KINDS = ("turn", "retry", "undo", "summary", "picture_prompt", "recap")


@dataclass(frozen=True)
class Job:
    campaign_id: int
    channel_id: int
    kind: str = "turn"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")


class JobHandle:
    """What a submitter holds: the place in the queue, the text so far, the result or the error."""

    def __init__(
        self, job: Job, position: Callable[["JobHandle"], int],
        on_cancel: Callable[["JobHandle"], None] | None = None,
    ) -> None:
        self.job = job
        self._position, self._on_cancel = position, on_cancel
        self._result: asyncio.Future = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self.text = ""  # generated so far
        self.view: View | None = None  # what the table is shown of `text` (the handler sets it; None: text)
        self.started = False
        self.cancel_requested = False

    @property
    def done(self) -> bool:
        return self._result.done()

    def position(self) -> int:
        """How many jobs run before this one (0 once it runs)."""
        return 0 if self.started or self.done else self._position(self)

    def cancel(self) -> None:
        """Free the slot; a job generating stops at its next token."""
        self.cancel_requested = True
        self._changed.set()
        if self._on_cancel is not None and not self.started and not self.done:
            self._on_cancel(self)  # a waiting job leaves its queue and fails now

    async def moved(self, position: int) -> None:
        """Wait until the job's place differs from `position`, it started, or it ended (no timers)."""
        while not self.started and not self.done and self.position() == position:
            self._changed.clear()
            await self._changed.wait()

    async def result(self) -> Any:
        return await asyncio.shield(self._result)

    async def updates(self) -> AsyncIterator[str]:
        """What the table is shown of the text so far (the handler's view of it), each time the text grew;
        ends when the job does (its error is raised)."""
        sent = None
        while True:
            # Clear before looking: text that grew while the reader was busy is yielded, not slept on.
            self._changed.clear()
            if self.text != sent:
                sent = self.text
                yield await self.view(sent) if self.view is not None else sent
                continue
            if self.done:
                break
            waiter = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({waiter, self._result}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        await self.result()

    # --- the runner's side ---
    def append(self, piece: str) -> None:
        self.text += piece
        self._changed.set()

    def reset_text(self, text: str = "") -> None:
        self.text = text
        self._changed.set()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self._result.done():
            return
        if error is not None:
            self._result.set_exception(error)
            self._result.exception()  # a handle nobody awaits must not log "never retrieved"
        else:
            self._result.set_result(result)
        self._changed.set()

    def fail_cancelled(self) -> None:
        self.finish(error=Cancelled("the job was cancelled"))
