"""Picture jobs: one per channel at a time, one on the server at a time, first come first served."""
from __future__ import annotations

import asyncio
from collections import deque

from engine.errors import Busy


class Ticket:
    """A picture's place in the painter's line, until it is released."""

    def __init__(self, painter: "Painter", channel_id: int) -> None:
        self.painter, self.channel_id = painter, channel_id
        self.line_changed = asyncio.Event()  # set by the painter when a ticket ahead of this one leaves

    def position(self) -> int:
        """Pictures ahead of this one (0: it is being painted)."""
        return self.painter.place(self) or 0

    async def moved(self, position: int) -> None:
        """Wait until this ticket's place differs from `position`."""
        while self.position() == position and self.painter.place(self) is not None:
            self.line_changed.clear()
            await self.line_changed.wait()

    def release(self) -> None:
        self.painter.release(self)


class Painter:
    """The line of pictures waiting for the picture server."""

    def __init__(self, max_waiting: int = 16) -> None:
        self.max_waiting = max_waiting
        self._line: deque[Ticket] = deque()

    def reserve(self, channel_id: int) -> Ticket:
        if any(t.channel_id == channel_id for t in self._line):
            raise Busy("a picture for this channel is already on its way", len(self._line))
        if len(self._line) >= self.max_waiting:
            raise Busy("the painter has too many pictures waiting; try again soon", len(self._line))
        ticket = Ticket(self, channel_id)
        self._line.append(ticket)
        return ticket

    def place(self, ticket: Ticket) -> int | None:
        """Pictures ahead of `ticket`; None once it left the line."""
        return self._line.index(ticket) if ticket in self._line else None

    def release(self, ticket: Ticket) -> None:
        if ticket in self._line:
            self._line.remove(ticket)
        for waiting in self._line:
            waiting.line_changed.set()

    def waiting(self) -> int:
        return len(self._line)
