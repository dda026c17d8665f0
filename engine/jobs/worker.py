"""One thread owns a model: callers await results, and the thread's death reaches every waiter."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Callable, Generic, TypeVar

from engine.errors import Unavailable

log = logging.getLogger(__name__)
M = TypeVar("M")
R = TypeVar("R")
# One model loads at a time: transformers' loading is not thread-safe. Loaded side by side, the
# text model and the embedder once in ~16 starts left SmolLM2's output layer on the "meta" device.
_LOADING = threading.Lock()
_STOP = object()


class ModelWorker(Generic[M]):
    """Runs `loader` once in its own thread, then every call on that thread, one at a time.

    A call that raises an Exception fails only itself. Anything that kills the thread (a
    BaseException, a crash inside a native library surfacing as one) fails the running call and
    every queued one with Unavailable; the worker is restarted (model reloaded) `restarts` times,
    after that it stays unavailable.
    """

    def __init__(self, name: str, loader: Callable[[], M], restarts: int = 1) -> None:
        self.name, self._loader, self._restarts_left = name, loader, restarts
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future | None = None
        self._dead_reason: str | None = None
        self.model: M | None = None

    @property
    def available(self) -> bool:
        return self._dead_reason is None and self._thread is not None and self._thread.is_alive()

    async def start(self) -> M:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._thread = threading.Thread(target=self._main, name=f"model-{self.name}", daemon=True)
        self._thread.start()
        return await self._ready

    async def call(self, fn: Callable[[M], R], timeout: float | None = None) -> R:
        """Run fn(model) on the worker thread; raise its exception, or Unavailable on death/timeout."""
        if self._dead_reason is not None:
            raise Unavailable(f"the {self.name} model is unavailable: {self._dead_reason}")
        future = asyncio.get_running_loop().create_future()
        self._queue.put((fn, future))
        if self._dead_reason is not None:  # it died (and drained the queue) between the check and the put
            raise Unavailable(f"the {self.name} model is unavailable: {self._dead_reason}")
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            raise Unavailable(f"the {self.name} model did not answer within {timeout:.0f} s") from None

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join, 30)
        self._dead_reason = self._dead_reason or "stopped"

    # --- worker thread ---
    def _answer(self, future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(settle)

    def _main(self) -> None:
        assert self._ready is not None
        try:
            with _LOADING:
                self.model = self._loader()
        except BaseException as exc:  # noqa: BLE001 - reported to the awaiting start()
            self._dead_reason = str(exc)
            self._answer(self._ready, error=exc if isinstance(exc, Exception) else Unavailable(str(exc)))
            return
        self._answer(self._ready, self.model)
        self._serve()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, future = item
            try:
                self._answer(future, fn(self.model))
            except Exception as exc:  # the call failed; the model is fine
                self._answer(future, error=exc)
            except BaseException as exc:  # noqa: BLE001 - the thread itself is going down
                log.error("%s worker died: %r", self.name, exc)
                self._answer(future, error=Unavailable(f"the {self.name} model crashed"))
                self._on_death(repr(exc))
                return

    def _on_death(self, reason: str) -> None:
        if self._restarts_left > 0:
            self._restarts_left -= 1
            log.warning("restarting the %s worker (%d restart(s) left)", self.name, self._restarts_left)
            try:
                self.model = self._loader()
            except BaseException as exc:  # noqa: BLE001
                reason = f"reload failed: {exc}"
            else:
                self._thread = threading.Thread(target=self._serve, name=f"model-{self.name}", daemon=True)
                self._thread.start()
                return
        self._dead_reason = reason
        while True:  # nobody may wait on a dead worker
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._answer(item[1], error=Unavailable(f"the {self.name} model is unavailable"))
