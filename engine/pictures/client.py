"""An AUTOMATIC1111 `/sdapi/v1` client (also Forge and SD.Next): txt2img with live progress,
interrupt, Basic auth, timeouts, and a picture that is checked and kept under Discord's limit."""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiohttp

from engine.errors import PicturesUnavailable, Unavailable

log = logging.getLogger(__name__)
DISCORD_FILE_LIMIT = 10 * 1024 * 1024  # bytes an unboosted server accepts per attachment


@dataclass(frozen=True)
class PictureSettings:
    url: str
    user: str = ""
    password: str | None = None
    steps: int = 20
    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    sampler_name: str = "Euler a"
    negative_prompt: str = ""
    checkpoint: str = ""
    timeout_s: float = 120.0
    max_bytes: int = DISCORD_FILE_LIMIT


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1; from elapsed time alone where the server has no /progress
    eta_s: float | None
    elapsed_s: float
    preview: bytes | None = None  # PNG of the current step, when the server sends one


@dataclass(frozen=True)
class Picture:
    image: bytes
    filename: str
    prompt: str
    seed: int | None


class PictureClient:
    """An AUTOMATIC1111 server over the shared aiohttp session: txt2img with progress, cancel, clear errors."""
    def __init__(self, session: aiohttp.ClientSession, settings: PictureSettings) -> None:
        self.session, self.settings = session, settings
        self.base = settings.url.rstrip("/")
        self._headers = {"Authorization": aiohttp.encode_basic_auth(settings.user, settings.password or "")} \
            if settings.user else {}
        self.has_progress = True  # False once the server answered 404 (KoboldCpp's built-in server)

    async def _request(self, method: str, path: str, *, timeout: float, json: Any = None) -> Any:
        try:
            async with self.session.request(method, self.base + path, json=json, headers=self._headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                if response.status == 401:
                    raise PicturesUnavailable(
                        "the picture server refused the login (check pictures.user and its password)")
                if response.status == 404:
                    raise FileNotFoundError(path)
                if response.status >= 400:
                    raise PicturesUnavailable(f"the picture server answered {response.status} {response.reason}")
                return await response.json(content_type=None)
        except asyncio.TimeoutError:
            raise PicturesUnavailable(f"the picture server did not answer within {timeout:.0f} s") from None
        except aiohttp.ClientConnectionError:
            raise PicturesUnavailable(f"the picture server at {self.base} is not reachable") from None
        except (aiohttp.ContentTypeError, ValueError) as exc:
            raise PicturesUnavailable("the picture server answered something that is not JSON") from exc

    def payload(self, prompt: str, seed: int | None) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "prompt": prompt, "negative_prompt": s.negative_prompt, "steps": s.steps, "cfg_scale": s.cfg_scale,
            "sampler_name": s.sampler_name, "width": s.width, "height": s.height,
            "seed": -1 if seed is None else seed, "batch_size": 1, "n_iter": 1,
        }
        if s.checkpoint:
            body["override_settings"] = {"sd_model_checkpoint": s.checkpoint}
            body["override_settings_restore_afterwards"] = True
        return body

    async def txt2img(self, prompt: str, seed: int | None = None) -> Picture:
        try:
            reply = await self._request("POST", "/sdapi/v1/txt2img", json=self.payload(prompt, seed),
                                        timeout=self.settings.timeout_s)
        except FileNotFoundError:
            raise PicturesUnavailable("this server has no /sdapi/v1/txt2img (start the web UI with --api)") from None
        images = reply.get("images") if isinstance(reply, dict) else None
        if not images or not isinstance(images[0], str):
            raise PicturesUnavailable("the picture server sent no image")
        image, filename = fit_for_discord(decode_image(images[0]), self.settings.max_bytes)
        return Picture(image, filename, prompt, seed)

    async def progress(self, started: float) -> Progress:
        elapsed = time.monotonic() - started
        if self.has_progress:
            try:
                reply = await self._request("GET", "/sdapi/v1/progress?skip_current_image=false", timeout=5)
                preview = reply.get("current_image")
                return Progress(float(reply.get("progress") or 0.0), reply.get("eta_relative"), elapsed,
                                decode_image(preview) if preview else None)
            except FileNotFoundError:
                self.has_progress = False
            except (Unavailable, TypeError, ValueError, AttributeError):
                pass  # a progress poll that fails is no reason to fail the picture
        guess = min(0.95, elapsed / max(1.0, self.settings.timeout_s / 4))
        return Progress(guess, None, elapsed)

    async def interrupt(self) -> None:
        try:
            await self._request("POST", "/sdapi/v1/interrupt", timeout=5)
        except (Unavailable, FileNotFoundError) as exc:
            log.warning("interrupt failed: %s", exc)

    async def paint(self, prompt: str, seed: int | None, on_progress: Callable[[Progress], Awaitable[None]],
                    poll_s: float = 1.0) -> Picture:
        """txt2img, reporting progress about every `poll_s` seconds until the picture is there."""
        started = time.monotonic()
        task = asyncio.ensure_future(self.txt2img(prompt, seed))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=poll_s)
                if done:
                    return task.result()
                await on_progress(await self.progress(started))
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def decode_image(data: str) -> bytes:
    """Base64 (maybe a data: URL) to image bytes that Pillow can open, or Unavailable."""
    from PIL import Image, UnidentifiedImageError

    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise PicturesUnavailable("the picture server sent something that is not an image") from exc
    return raw


def fit_for_discord(raw: bytes, limit: int) -> tuple[bytes, str]:
    """The PNG as it is when it fits; else a JPEG, smaller step by step until it does."""
    from PIL import Image

    if len(raw) <= limit and raw.startswith(b"\x89PNG"):
        return raw, "scene.png"
    with Image.open(io.BytesIO(raw)) as image:
        picture = image.convert("RGB")
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        out = io.BytesIO()
        picture.resize(size).save(out, format="JPEG", quality=85)
        if out.tell() <= limit:
            return out.getvalue(), "scene.jpg"
    raise PicturesUnavailable("the picture is too large to post even when shrunk")
