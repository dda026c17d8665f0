"""One queue per channel, round-robin across channels, generate calls batched across channels.

The design follows vLLM's engine loop in miniature: jobs wait in per-channel FIFOs; at most one job
per channel runs at a time (so a campaign's turns never overlap or reorder); up to `batch_size`
channels run at once, and their generate requests, arriving together, go to the model worker as
one batched call. A failed call fails exactly the jobs in it; every waiter gets an answer. A
backend that is a model server (`concurrent`) schedules by itself: each request streams on its own.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from engine.errors import Busy, Cancelled, EngineError, Unavailable
from engine.generation import GenerationSettings
from engine.jobs.job import Job, JobHandle
from engine.jobs.guard import PromptGuard
from engine.textgen.base import GenRequest, TextBackend
from engine.textgen.voice import Voice
from engine.jobs.worker import ModelWorker

log = logging.getLogger(__name__)


@dataclass
class _GenSlot:
    request: GenRequest
    handle: JobHandle
    stream: bool
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    written: str = ""  # the reply so far, as the backend handed it over (on the thread that generates)

    def take(self, piece: str) -> None:
        self.written += piece

    def should_stop(self) -> bool:
        """Cancelled, or the request's `until` holds for its reply so far."""
        until = self.request.until
        return self.handle.cancel_requested or (until is not None and bool(self.written) and until(self.written))


class JobContext:
    """Handed to the job's handler: generate through the shared batcher, publish early results."""

    def __init__(self, runner: "Runner", handle: JobHandle) -> None:
        self._runner, self.handle, self.job = runner, handle, handle.job

    @property
    def cancelled(self) -> bool:
        return self.handle.cancel_requested

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("the job was cancelled")

    async def generate(self, text: str, settings: GenerationSettings, *, stream: bool = True,
                       voice: Voice | None = None, until: Callable[[str], bool] | None = None) -> str:
        """Generate in a batch with other channels' jobs; streamed text reaches the handle. With `until`, the
        reply ends as soon as until(reply so far) holds."""
        self.check_cancelled()
        if self._runner.guard is not None:
            self._runner.guard.check(text, settings)
        request = GenRequest(text, settings, voice, until)
        result = await self._runner.generate_in_batch(_GenSlot(request, self.handle, stream))
        self.check_cancelled()
        return result

    def show_through(self, view) -> None:
        """What the table is shown of the text as it streams: `view` of it (None: the text itself)."""
        self.handle.view = view

    def restart_stream(self, text: str = "") -> None:
        """The streamed text starts again from `text` (a roll written where the model left its marker)."""
        self.handle.reset_text(text)

    def resolve(self, result: Any) -> None:
        """Answer the submitter now; the handler may go on (a summary) while the channel waits."""
        self.handle.finish(result)


Handler = Callable[[Job, JobContext], Awaitable[Any]]


class Runner:
    """One queue per channel (order kept), fair across channels, bounded; generate calls of several channels' jobs batched."""
    def __init__(
        self, handler: Handler, text_worker: ModelWorker[TextBackend], *, batch_size: int = 4,
        batch_wait_ms: int = 20, max_pending_per_channel: int = 8, max_pending_total: int = 64,
        job_timeout_s: float = 600.0, guard: PromptGuard | None = None,
    ) -> None:
        self._handler, self._worker = handler, text_worker
        self.guard = guard  # every generate call passes it
        self.batch_size, self._batch_wait = batch_size, batch_wait_ms / 1000
        self._max_channel, self._max_total, self._timeout = max_pending_per_channel, max_pending_total, job_timeout_s
        self._waiting: dict[int, deque[JobHandle]] = {}
        self._rotation: deque[int] = deque()  # channels with waiting jobs, in round-robin order
        self._running: dict[int, asyncio.Task] = {}
        self._handles: dict[asyncio.Task, JobHandle] = {}  # each running job's task and its handle
        self._gen_pending: list[_GenSlot] = []
        self._wake_batcher = asyncio.Event()
        # The batcher runs only while there are requests: an idle runner owns no task at all, so
        # nothing waits forever in the background (and test harnesses can tell when work is done).
        self._batcher: asyncio.Task | None = None
        self._streams: set[asyncio.Task] = set()  # requests to a concurrent backend (a model server)
        self._closing = False

    # --- submitting ---
    def submit(self, job: Job) -> JobHandle:
        if self._closing:
            raise Unavailable("the Dungeon Master is shutting down")
        queue = self._waiting.get(job.channel_id, deque())
        if len(queue) >= self._max_channel:
            raise Busy(f"this channel already has {len(queue)} jobs waiting; try again in a moment", len(queue))
        total = self.queue_length()
        if total >= self._max_total:
            raise Busy(f"the Dungeon Master is busy with {total} waiting jobs; try again soon", total)
        handle = JobHandle(job, self._position, self._drop_waiting)
        self._waiting.setdefault(job.channel_id, deque()).append(handle)
        # A channel whose job is running rejoins the rotation when that job ends (see _run), behind
        # the channels that arrived meanwhile: that is what keeps a busy channel from going twice.
        if job.channel_id not in self._rotation and job.channel_id not in self._running:
            self._rotation.append(job.channel_id)
        self._start_ready_jobs()
        return handle

    def queue_length(self, channel_id: int | None = None) -> int:
        if channel_id is not None:
            return len(self._waiting.get(channel_id, ()))
        return sum(len(q) for q in self._waiting.values())

    def _position(self, handle: JobHandle) -> int:
        queue = self._waiting.get(handle.job.channel_id, deque())
        ahead = queue.index(handle) if handle in queue else 0
        return ahead + (1 if handle.job.channel_id in self._running else 0)

    def _drop_waiting(self, handle: JobHandle) -> None:
        """A waiting job was cancelled: free its slot and answer its submitter now."""
        channel = handle.job.channel_id
        queue = self._waiting.get(channel)
        if queue is not None and handle in queue:
            queue.remove(handle)
            if not queue:
                self._waiting.pop(channel, None)
                if channel in self._rotation:
                    self._rotation.remove(channel)
        handle.fail_cancelled()

    def cancel_channel(self, channel_id: int) -> int:
        """Cancel every job of a channel (its campaign was reset or ended); returns how many."""
        handles = list(self._waiting.pop(channel_id, ()))
        for handle in handles:
            handle.cancel()
            handle.fail_cancelled()
        if channel_id in self._rotation:
            self._rotation.remove(channel_id)
        task = self._running.get(channel_id)
        if task is not None:
            self._handles[task].cancel()
        return len(handles) + (task is not None)

    # --- scheduling ---
    def _start_ready_jobs(self) -> None:
        for _ in range(len(self._rotation)):
            if len(self._running) >= self.batch_size:
                return
            channel = self._rotation.popleft()
            queue = self._waiting.get(channel)
            if channel in self._running:  # it rejoins the rotation when its job ends
                continue
            while queue and queue[0].cancel_requested:
                queue.popleft().fail_cancelled()
            if not queue:
                self._waiting.pop(channel, None)
                continue
            handle = queue.popleft()
            if not queue:
                self._waiting.pop(channel, None)
            handle.started = True  # from now on it has no place in a queue
            task = asyncio.create_task(self._run(handle), name=f"job-{handle.job.request_id}")
            self._handles[task] = handle
            task.add_done_callback(self._handles.pop)
            self._running[channel] = task
            self._tell_waiting(channel)

    def _tell_waiting(self, channel: int) -> None:
        """The places of that channel's waiting jobs changed: wake whoever shows them."""
        for waiting in self._waiting.get(channel, ()):
            waiting._changed.set()

    async def _run(self, handle: JobHandle) -> None:
        handle._changed.set()
        try:
            if handle.cancel_requested:
                raise Cancelled("the job was cancelled")
            handle.finish(await self._handler(handle.job, JobContext(self, handle)))
        except asyncio.CancelledError:
            handle.fail_cancelled()
            raise
        except Exception as exc:
            if not isinstance(exc, EngineError):  # engine errors are answers (bad input...), not bugs
                log.exception("job %s (%s) failed", handle.job.request_id, handle.job.kind)
            handle.finish(error=exc)
        finally:
            channel = handle.job.channel_id
            self._running.pop(channel, None)
            self._tell_waiting(channel)
            if self._waiting.get(channel) and channel not in self._rotation:
                self._rotation.append(channel)  # behind the channels that waited while it ran
            if not self._closing:
                self._start_ready_jobs()

    # --- batching generate calls ---
    async def generate_in_batch(self, slot: _GenSlot) -> str:
        self._gen_pending.append(slot)
        self._wake_batcher.set()
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._batch(), name="runner-batcher")
            self._batcher.add_done_callback(self._on_batcher_exit)
        return await slot.future

    async def _batch(self) -> None:
        """Serve generate requests until none are left, gathering each batch for a moment."""
        while self._gen_pending:
            self._wake_batcher.clear()
            await self._gather()
            while self._gen_pending:
                slots, self._gen_pending = self._gen_pending[: self.batch_size], self._gen_pending[self.batch_size :]
                await self._run_batch([s for s in slots if not self._drop_cancelled(s)])

    async def _gather(self) -> None:
        """Wait a moment for the other running jobs' requests, so they share one call."""
        if self._worker.model is not None and self._worker.model.concurrent:
            return  # nothing to share: each request streams on its own
        deadline = asyncio.get_running_loop().time() + self._batch_wait
        while len(self._gen_pending) < min(self.batch_size, len(self._running)):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._wake_batcher.wait(), left)
            except asyncio.TimeoutError:
                return
            self._wake_batcher.clear()

    @staticmethod
    def _drop_cancelled(slot: _GenSlot) -> bool:
        if slot.handle.cancel_requested and not slot.future.done():
            slot.future.set_exception(Cancelled("the job was cancelled"))
        return slot.future.done()

    async def _run_batch(self, slots: list[_GenSlot]) -> None:
        if not slots:
            return
        backend = self._worker.model
        if backend is not None and backend.concurrent:  # a server that schedules by itself: one stream per job
            for slot in slots:
                task = asyncio.create_task(self._stream(backend, slot), name=f"stream-{slot.handle.job.request_id}")
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)
            return
        groups = [slots] if backend is None or backend.can_batch else [[s] for s in slots]
        for group in groups:
            await self._call_backend(group)

    async def _call_backend(self, slots: list[_GenSlot]) -> None:
        loop = asyncio.get_running_loop()

        def on_token(i: int, piece: str) -> None:  # worker thread
            slots[i].take(piece)
            if slots[i].stream:
                loop.call_soon_threadsafe(slots[i].handle.append, piece)

        def should_stop(i: int) -> bool:  # worker thread; reading a bool is safe
            return slots[i].should_stop()

        requests = [s.request for s in slots]
        try:
            texts = await self._worker.call(
                lambda backend: backend.generate_batch(requests, on_token, should_stop), timeout=self._timeout
            )
        except Exception as exc:  # fails exactly the jobs in this call
            if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's, CPU or GPU
                log.warning("the model ran out of memory for %d request(s)", len(slots), exc_info=exc)
                exc = Unavailable("the model ran out of memory; try again in a moment, or with fewer or shorter actions")
            for slot in slots:
                if not slot.future.done():
                    slot.future.set_exception(exc)
            return
        for slot, text in zip(slots, texts):
            if not slot.future.done():
                slot.future.set_result(text)

    async def _stream(self, backend: TextBackend, slot: _GenSlot) -> None:
        def on_piece(piece: str) -> None:
            slot.take(piece)
            if slot.stream:
                slot.handle.append(piece)

        try:
            text = await asyncio.wait_for(backend.stream(slot.request, on_piece, slot.should_stop), self._timeout)
        except asyncio.TimeoutError:
            text, error = None, Unavailable(f"the model server did not finish within {self._timeout:.0f} s")
        except Exception as exc:  # fails exactly this job
            text, error = None, exc
        if not slot.future.done():
            if text is None:
                slot.future.set_exception(error)
            else:
                slot.future.set_result(text)

    # --- lifecycle ---
    def _on_batcher_exit(self, task: asyncio.Task) -> None:
        """A batcher that died answers the requests it left behind; the next request starts a new one."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("the runner's batcher died", exc_info=task.exception())
        for slot in self._gen_pending:
            if not slot.future.done():
                slot.future.set_exception(Unavailable("the job runner failed; try again"))
        self._gen_pending.clear()

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, cancel waiting jobs, let running ones finish (cancelled after timeout)."""
        self._closing = True
        for channel in list(self._waiting):
            for handle in self._waiting.pop(channel):
                handle.finish(error=Unavailable("the Dungeon Master is shutting down"))
        self._rotation.clear()
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                self._handles[task].cancel()
            if late:
                await asyncio.wait(late, timeout=5)
            for task in late:
                task.cancel()
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
        for task in list(self._streams):
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
