"""The AUTOMATIC1111 client against a real loopback server, with every failure it must survive."""
from __future__ import annotations

import asyncio
import io

import aiohttp
import pytest
from PIL import Image
from sd_server import SDServer, ServerThread

from engine.errors import Unavailable
from engine.pictures.client import PictureClient, PictureSettings, fit_for_discord


@pytest.fixture
def sd():
    threads: list[ServerThread] = []

    async def make(**options) -> SDServer:
        threads.append(ServerThread(SDServer(**options)))
        return threads[-1].start()

    yield make
    for thread in threads:
        thread.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def client(session, server: SDServer, **settings) -> PictureClient:
    return PictureClient(session, PictureSettings(url=server.url, **{"steps": 5, "width": 64, "height": 48,
                                                                     **settings}))


async def test_paint_sends_the_settings_reports_progress_and_returns_a_real_png(sd, session):
    server = await sd(step_delay=0.1)
    pictures = client(session, server, negative_prompt="blurry", checkpoint="anime.safetensors", cfg_scale=6)
    seen = []

    async def on_progress(progress):
        seen.append(progress)

    picture = await pictures.paint("a tavern at night", 42, on_progress, poll_s=0.1)
    body = server.requests[0]
    assert body["prompt"] == "a tavern at night" and body["negative_prompt"] == "blurry" and body["seed"] == 42
    assert (body["steps"], body["width"], body["height"], body["cfg_scale"]) == (5, 64, 48, 6)
    assert body["override_settings"] == {"sd_model_checkpoint": "anime.safetensors"}
    with Image.open(io.BytesIO(picture.image)) as image:
        assert image.format == "PNG" and image.size == (64, 48)
    assert picture.filename == "scene.png" and len(seen) >= 2
    assert any(0 < p.fraction < 1 for p in seen) and any(p.preview for p in seen)


async def test_basic_auth_and_a_wrong_password(sd, session):
    server = await sd(user="painter", password="s3cret")
    picture = await client(session, server, user="painter", password="s3cret").txt2img("x")
    assert picture.image.startswith(b"\x89PNG")
    with pytest.raises(Unavailable, match="refused the login"):
        await client(session, server, user="painter", password="wrong").txt2img("x")


@pytest.mark.parametrize("mode, message", [
    ("500", "answered 500"), ("not_json", "not JSON"), ("not_image", "not an image"), ("no_images", "no image"),
])
async def test_every_bad_answer_is_one_clear_error(sd, session, mode, message):
    server = await sd(mode=mode, step_delay=0)
    with pytest.raises(Unavailable, match=message):
        await client(session, server).txt2img("x")


async def test_a_server_that_is_down_or_too_slow(sd, session):
    down = PictureClient(session, PictureSettings(url="http://127.0.0.1:9", timeout_s=5))
    with pytest.raises(Unavailable, match="not reachable"):
        await down.txt2img("x")
    slow = await sd(mode="slow")
    with pytest.raises(Unavailable, match="within 1 s"):
        await client(session, slow, timeout_s=1).txt2img("x")


async def test_interrupt_stops_the_server_and_progress_falls_back_to_elapsed_time(sd, session):
    server = await sd(step_delay=0.2, progress_missing=True)
    pictures = client(session, server, steps=50)
    seen = []

    async def on_progress(progress):
        seen.append(progress)
        if len(seen) == 2:
            await pictures.interrupt()

    picture = await asyncio.wait_for(pictures.paint("x", None, on_progress, poll_s=0.1), 10)
    assert server.interrupted == 1 and server.step < 50 and picture.image
    assert pictures.has_progress is False and all(p.eta_s is None for p in seen)
    assert seen[-1].elapsed_s > seen[0].elapsed_s and 0 < seen[-1].fraction < 1


def test_a_picture_too_large_for_discord_is_shrunk_into_a_jpeg():
    out = io.BytesIO()
    Image.effect_noise((512, 512), 100).convert("RGB").save(out, format="PNG")
    raw = out.getvalue()
    image, name = fit_for_discord(raw, len(raw) // 4)
    assert name == "scene.jpg" and len(image) <= len(raw) // 4
    assert fit_for_discord(raw, len(raw)) == (raw, "scene.png")
    with pytest.raises(Unavailable, match="too large"):
        fit_for_discord(raw, 10)
