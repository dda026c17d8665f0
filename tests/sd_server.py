"""A real HTTP server on loopback speaking AUTOMATIC1111's /sdapi/v1 API, with a switch for every
failure the bot must survive. Pictures are real PNGs made with Pillow after `steps` steps."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from dataclasses import dataclass, field

from aiohttp import web
from PIL import Image


def png(width: int, height: int, seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, 128)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class SDServer:
    user: str = ""
    password: str = ""
    step_delay: float = 0.05
    mode: str = "ok"  # ok | 500 | not_json | not_image | no_images | slow
    progress_missing: bool = False  # KoboldCpp: no /sdapi/v1/progress
    requests: list[dict] = field(default_factory=list)
    interrupted: int = 0
    step: int = 0
    steps: int = 0
    url: str = ""
    # > 0: stop after this step until release() or an interrupt, with `held` set meanwhile (a test
    # that cannot lean on wall-clock time holds the picture half done and lets it go when it wants)
    hold_at: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/sdapi/v1/txt2img", self.txt2img)
        app.router.add_post("/sdapi/v1/interrupt", self.interrupt)
        if not self.progress_missing:
            app.router.add_get("/sdapi/v1/progress", self.progress)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.user:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response({"detail": "Not authenticated"}, status=401)
        return await handler(request)

    async def txt2img(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "500":
            return web.json_response({"error": "RuntimeError", "detail": "CUDA out of memory"}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(3600)
        self.steps, self.step, stop_at = body["steps"], 0, self.interrupted
        for self.step in range(1, self.steps + 1):
            await asyncio.sleep(self.step_delay)
            if self.step == self.hold_at:
                self.held.set()
                while not self.released.is_set() and self.interrupted == stop_at:
                    await asyncio.sleep(0.01)
            if self.interrupted != stop_at:
                break
        if self.mode == "not_json":
            return web.Response(text="<html>Internal error</html>", content_type="text/html")
        seed = body.get("seed", -1)
        seed = 1234 if seed == -1 else seed
        image = base64.b64encode(png(body["width"], body["height"], seed)).decode()
        if self.mode == "not_image":
            image = base64.b64encode(b"this is not a picture at all").decode()
        images = [] if self.mode == "no_images" else [image]
        return web.json_response({"images": images, "parameters": body, "info": json.dumps({"seed": seed})})

    async def progress(self, request: web.Request) -> web.Response:
        fraction = self.step / self.steps if self.steps else 0.0
        preview = base64.b64encode(png(16, 16, self.step)).decode() if 0 < self.step < self.steps else None
        return web.json_response({"progress": fraction, "eta_relative": (self.steps - self.step) * self.step_delay,
                                  "state": {"sampling_step": self.step, "sampling_steps": self.steps},
                                  "current_image": preview, "textinfo": None})

    def release(self) -> None:
        """Let a picture held at `hold_at` go on to its last step."""
        self.released.set()

    async def interrupt(self, request: web.Request) -> web.Response:
        self.interrupted += 1
        return web.json_response({})


class ServerThread:
    """The server in its own thread and event loop, like a real web UI beside the bot: the test's
    loop (and SimCord's virtual clock in it) never runs the server's sleeps."""

    def __init__(self, server: SDServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="sd-server", daemon=True)

    def start(self) -> SDServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self.server

    async def _start(self) -> None:
        # shutdown_timeout: a 'slow' request must not hold the cleanup for a minute
        self.runner = web.AppRunner(self.server.app(), shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.server.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
