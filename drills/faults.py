"""Faults drill: each fault is one scenario played through the real bot, then healed.

Every scenario builds the real bot (create_bot) over a fresh SQLite file inside SimCord's simulated
Discord, with the scripted text backend (tests/scripted_backend.py: failures injectable, no model)
and the real MiniLM embedder; the picture server and the translator are the tests' loopback aiohttp
servers. It injects one fault, plays (actions, /dm continue, /dm picture, a Russian campaign), heals
the fault and plays on. Three readings are taken after each one:
- unhandled errors: exceptions that escaped the bot's own handlers (SimCord's record, discord.py's
  "Ignoring exception", asyncio's "never retrieved") and errors logged with an exception that is not
  the injected fault. The tree handler logging the injected fault and apologising is the project's
  designed answer to an unexpected failure: counted as an apology, not as unhandled;
- lost actions, read from the SQLite file: a player's message that is neither a pending action nor
  part of a committed turn (stored and gone, or never stored and the player never told);
- unclear messages: a traceback or an exception's name in anything the bot showed, a message left
  saying the bot is still at work ("the DM is writing", "🎨 Looking at the scene…") when all is over,
  or a faulted command that told its user nothing that says why.

SimCord answers an injected 429 at once with the HTTPException discord.py raises once its own
retries are spent (SimCord replaces discord.py's HTTP client, retries and all).

This file holds the faults and the command line; the world they are played in, the instruments and
the readings are drills/faults_harness.py.

    .venv/bin/python drills/faults.py [--only NAME[,NAME]] [--fast] [--list] [-v]

The last line of stdout is one JSON object; the exit code is 1 when any fault was not survived.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, when run as drills/faults.py
from bench.common import emit, use_paths  # noqa: E402 (after the path)

use_paths(tests=True)  # the tests' helpers by module name (yandexfreetranslate owns `tests`)
import discord  # noqa: E402
import simcord  # noqa: E402
from drills.faults_harness import (NARRATION, DrillBackend, Fault, Locker, Outcome, Play, PortServer,  # noqa: E402
                                   Shared, Skip, free_port, run_fault, shown_text)
from sd_server import SDServer, ServerThread  # noqa: E402
from translate_server import TranslateServer  # noqa: E402

log = logging.getLogger("drills.faults")
LONG_STORY = "\n\n".join(" ".join(f"Part {c}, line {n}: the lantern sways while the party goes down one more step."
                                   for n in range(8)) for c in range(4))  # two Discord messages
LOCK_BRIEF_S, LOCK_LONG_S = 2.0, 7.0  # the store's busy_timeout is 5 s: one within it, one past it


FAULTS: dict[str, Fault] = {}


def fault(name: str, about: str, *, expected: tuple = (), fast: bool = True, config=None):
    def register(play):
        FAULTS[name] = Fault(name, about, play, expected, fast, config or (lambda shared: {}))
        return play
    return register


# --- the faults ---
def discord_fault(name: str, method: str, path: str, status: int, about: str, shown: str):
    """Discord answering `status` to every matching call during one long turn."""
    message = "You are being rate limited." if status == 429 else "Internal Server Error (injected by drill)"

    async def scenario(play: Play) -> None:
        await play.start()
        await play.act(play.world.alice, "I pry at the sealed tomb.")
        await play.act(play.world.bob, "I brace the lid with my shield.")
        play.backend.script = LONG_STORY
        play.env.inject_error(method, path, status=status, message=message, times=None)
        result = await play.slash(play.world.bob, "dm continue", checked=shown != "nothing")
        play.env.backend.faults.clear()
        if shown == "nothing":  # not even the defer got through: the turn never started
            assert await play.turns() == 0 and len(await play.pending()) == 2, "a turn ran without its defer"
        else:
            assert await play.turns() == 1 and await play.pending() == [], "the turn was not saved whole"
            if shown == "in the channel":
                story = "\n".join(m.content for m in play.world.bot_messages(play.world.table))
                assert LONG_STORY[-60:] in story, "the narration did not reach the channel"
            else:
                play.told(result, "Something went wrong")
        await play.goes_on()

    fault(name, about, expected=(discord.HTTPException,))(scenario)


discord_fault("discord_500_send", "POST", "/channels/*/messages", 500,
              "Discord 500 on sending the long narration's further messages", "apology")
discord_fault("discord_429_send", "POST", "/channels/*/messages", 429,
              "Discord 429 on sending the long narration's further messages", "apology")
discord_fault("discord_500_edit", "PATCH", "/webhooks/*/*/messages/@original", 500,
              "Discord 500 on editing the streamed reply", "in the channel")
discord_fault("discord_429_edit", "PATCH", "/webhooks/*/*/messages/@original", 429,
              "Discord 429 on editing the streamed reply", "in the channel")
discord_fault("discord_500_defer", "POST", "/interactions/*/*/callback", 500,
              "Discord 500 on the interaction's first answer (the defer)", "nothing")


@fault("discord_500_mark", "Discord 500 on the ✍️ reaction that marks a stored action")
async def _discord_mark(play: Play) -> None:
    await play.start()
    play.env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=500, times=None)
    await play.act(play.world.alice, "I whisper the password.")
    play.env.backend.faults.clear()
    assert await play.pending() == ["I whisper the password."], "the action was not stored"
    await play.goes_on()


def picture_config(shared: Shared, **extra) -> dict:
    return {"pictures": {"enabled": True, "url": shared.sd.url, "steps": 2, "width": 64, "height": 64,
                         "timeout_s": 20.0, **extra}}


async def picture_works(play: Play) -> None:
    result = await play.slash(play.world.alice, "dm picture", focus="the crypt")
    final = result.response.message if result.response else result.followups[-1].message
    assert [a.filename for a in final.attachments] == ["SPOILER_scene.png"], "the healed picture did not arrive"


@contextlib.contextmanager
def waits_declared(env: simcord.Env):
    """txt2img and the wait between progress polls declared as outside input, as the `painting` fixture
    of tests/test_discord_pictures.py does: undeclared, SimCord never lets its clock (and with it the
    polls and the request's timeout) move while the server is silent, and the table hangs in the drill."""
    import engine.pictures.client
    from engine.pictures.client import PictureClient

    txt2img, module_asyncio = PictureClient.txt2img, engine.pictures.client.asyncio

    async def declared_txt2img(self, *args, **kwargs):
        return await env.external_wait(txt2img(self, *args, **kwargs), reason="AUTOMATIC1111 txt2img")

    class DeclaredWaits:
        def __getattr__(self, name: str):
            return getattr(asyncio, name)

        async def wait(self, tasks, **options):
            return await env.external_wait(asyncio.wait(tasks, **options), reason="the picture or the next poll")

    PictureClient.txt2img, engine.pictures.client.asyncio = declared_txt2img, DeclaredWaits()
    try:
        yield
    finally:
        PictureClient.txt2img, engine.pictures.client.asyncio = txt2img, module_asyncio


def picture_fault(name: str, about: str, setup: Callable[[Play], None], shown: str, heal: Callable[[Play], None],
                  declare: bool = False, **config):
    async def scenario(play: Play) -> None:
        await play.start()
        await play.act(play.world.alice, "I raise my lantern to the fresco.")
        setup(play)
        with waits_declared(play.env) if declare else contextlib.nullcontext():
            play.told(await play.slash(play.world.alice, "dm picture", focus="the fresco"), shown)
        await play.goes_on()  # the story goes on while the painter is broken
        heal(play)
        await picture_works(play)

    fault(name, about, config=lambda shared: picture_config(shared, **config))(scenario)


def sd_set(**values) -> Callable[[Play], None]:
    def switch(play: Play) -> None:
        for key, value in values.items():
            setattr(play.shared.sd, key, value)
    return switch


picture_fault("picture_500", "the picture server answers 500", sd_set(mode="500"), "answered 500", sd_set(mode="ok"))
picture_fault("picture_401", "the picture server refuses the login", sd_set(user="painter", password="other"),
              "refused the login", sd_set(user=""), user="painter")
picture_fault("picture_garbage", "the picture server sends something that is not an image",
              sd_set(mode="not_image"), "not an image", sd_set(mode="ok"))
picture_fault("picture_not_json", "the picture server sends an HTML page instead of JSON",
              sd_set(mode="not_json"), "not JSON", sd_set(mode="ok"))
# aiohttp's timeout runs by the wall clock here (SimCord cannot put it on its virtual one): keep it short
picture_fault("picture_slow", "the picture server never answers (1 s timeout)", sd_set(mode="slow"),
              "did not answer within", sd_set(mode="ok"), declare=True, timeout_s=1.0)


@fault("picture_down", "the picture server is down (nothing listens), then comes up",
       config=lambda shared: picture_config(shared, url=f"http://127.0.0.1:{shared.stash.setdefault('port', free_port())}"))
async def _picture_down(play: Play) -> None:
    port = play.shared.stash["port"]
    await play.start()
    await play.act(play.world.alice, "I raise my lantern to the fresco.")
    play.told(await play.slash(play.world.alice, "dm picture"), "not reachable")
    await play.goes_on()
    server = PortServer(SDServer(step_delay=0.02), port)
    server.start()
    try:
        await picture_works(play)
    finally:
        server.stop()


def translation_config(url: str) -> dict:
    return {"translation": {"provider": "yandex", "url": url, "timeout_s": 2.0, "pause_after": 2, "pause_s": 60.0}}


async def russian_turns(play: Play, heal: Callable[[], None]) -> None:
    started = await play.start(language="ru")  # the premise is translated at the start: the outage shows there
    await play.act(play.world.alice, "Я открываю дверь.")
    first = await play.slash(play.world.alice, "dm continue")
    said_at_start = "translation is unavailable" in shown_text(started)
    play.told(started if said_at_start else first, "translation is unavailable")  # told once, where it came up
    turn = await play.store.last_turn(play.campaign.id)
    assert [a.written for a in turn.actions] == ["Я открываю дверь."], "the untranslated action was not narrated"
    heal()
    await play.env.advance_time(61)  # past the translator's pause
    await play.act(play.world.alice, "Кто там?")
    play.backend.script = "The door creaks open."
    result = await play.slash(play.world.alice, "dm continue")
    play.told(result, "дверь")  # translated again: the narration comes back in Russian
    assert "Aria: Who there?" in play.backend.calls[-1].texts[0], "the healed turn's action was not translated"
    await play.goes_on()


@fault("translator_down", "the translator answers 500 in a Russian campaign",
       config=lambda shared: translation_config(shared.translator.url))
async def _translator_down(play: Play) -> None:
    play.shared.translator.mode = "down"
    await russian_turns(play, lambda: setattr(play.shared.translator, "mode", "ok"))


@fault("translator_unreachable", "nothing listens where the translator should be, then it comes up",
       config=lambda shared: translation_config(f"http://127.0.0.1:{shared.stash.setdefault('port', free_port())}"))
async def _translator_unreachable(play: Play) -> None:
    server = PortServer(TranslateServer(), play.shared.stash["port"])
    try:
        await russian_turns(play, server.start)
    finally:
        if server.thread.is_alive():
            server.stop()


def generate_fault(name: str, about: str, make: Callable[[], BaseException], kind: type[BaseException]):
    async def scenario(play: Play) -> None:
        await play.start()
        await play.act(play.world.alice, "I read the runes aloud.")
        await play.act(play.world.bob, "I cover my ears.")
        play.backend.fail_next(make())
        play.told(await play.slash(play.world.alice, "dm continue"), "Something went wrong", "cannot answer")
        assert await play.turns() == 0 and len(await play.pending()) == 2, "the failed turn took the actions"
        await play.goes_on()

    fault(name, about, expected=(kind,))(scenario)


def torch_oom() -> BaseException:
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total)")


generate_fault("generate_raises", "a generate call raises (a CUDA error)",
               lambda: RuntimeError("CUDA error: an illegal memory access was encountered"), RuntimeError)
generate_fault("generate_oom", "a generate call runs out of GPU memory (torch.OutOfMemoryError)", torch_oom,
               RuntimeError)
generate_fault("generate_memory_error", "a generate call runs out of host memory (MemoryError)", MemoryError,
               MemoryError)


@fault("generate_raises_picture", "a generate call raises while it writes a picture's prompt",
       expected=(RuntimeError,), config=picture_config)
async def _generate_raises_picture(play: Play) -> None:
    await play.start()
    await play.act(play.world.alice, "I raise my lantern to the fresco.")
    play.backend.fail_next(RuntimeError("CUDA error: an illegal memory access was encountered"))
    play.told(await play.slash(play.world.alice, "dm picture"), "Something went wrong", "cannot answer")
    await play.goes_on()
    await picture_works(play)


@fault("generate_oom_midway", "a generate call runs out of GPU memory after the narration began streaming",
       expected=(RuntimeError,))
async def _generate_oom_midway(play: Play) -> None:
    await play.start()
    await play.act(play.world.alice, "I read the runes aloud.")
    play.backend.fail_midway.append((4, torch_oom()))  # a growing KV cache fails mid-reply, not before it
    play.told(await play.slash(play.world.alice, "dm continue"), "Something went wrong", "cannot answer")
    assert await play.turns() == 0 and len(await play.pending()) == 1, "the failed turn took the action"
    await play.goes_on()


def lock_on_action(name: str, hold_s: float, fast: bool):
    @fault(name, f"the database is locked for {hold_s:.0f} s while a player's action is stored",
           expected=(sqlite3.OperationalError,), fast=fast)
    async def scenario(play: Play) -> None:
        await play.start()
        locker = Locker(play.db_path, hold_s)
        locker.start()
        await play.act(play.world.alice, "I slip the key into my boot.")  # stored, or its player told why
        await locker.wait_released()
        await play.goes_on()


def lock_on_commit(name: str, hold_s: float, fast: bool):
    @fault(name, f"the database is locked for {hold_s:.0f} s while a turn is committed",
           expected=(sqlite3.OperationalError,), fast=fast)
    async def scenario(play: Play) -> None:
        await play.start()
        await play.act(play.world.alice, "I slip the key into my boot.")
        locker = Locker(play.db_path, hold_s)
        play.backend.before_call.append(locker.start)  # locked after the turn's reads, before its commit
        result = await play.slash(play.world.alice, "dm continue")
        await locker.wait_released()
        if await play.turns() == 0:
            play.told(result, "Something went wrong", "busy", "cannot answer")
            assert await play.pending() == ["I slip the key into my boot."], "the failed turn took the action"
        else:
            play.told(result, NARRATION[:40])
        await play.goes_on()


lock_on_action("db_locked_brief_action", LOCK_BRIEF_S, True)
lock_on_action("db_locked_long_action", LOCK_LONG_S, False)
lock_on_commit("db_locked_brief_commit", LOCK_BRIEF_S, True)
lock_on_commit("db_locked_long_commit", LOCK_LONG_S, False)


def openai_config(shared: Shared) -> dict:
    if importlib.util.find_spec("engine.textgen.openai_backend") is None:
        raise Skip("backend not built")
    if importlib.util.find_spec("openai_server") is None:
        raise Skip("no loopback model server (tests/openai_server.py) yet")
    from openai_server import OpenAIServer

    if "openai" not in shared.stash:
        thread = ServerThread(OpenAIServer(words=NARRATION.split(" "), mode="drop", drop_after=3))
        shared.servers.append(thread)
        shared.stash["openai"] = thread.start()
    llm = {"backend": "openai", "base_url": shared.stash["openai"].url + "/v1", "model": "drill"}
    from bot.config import parse_config
    from bot.services import text_loader
    from engine.errors import Unavailable

    try:  # building the loader loads nothing; it refuses a backend the services cannot build yet
        text_loader(parse_config({"llm": llm}), log.info)
    except Unavailable:
        raise Skip("backend not wired into bot.services") from None
    return {"llm": llm}


@fault("openai_stream_drop", "the model server (openai backend) drops the stream mid-narration",
       config=openai_config)
async def _openai_stream_drop(play: Play) -> None:
    # Filled in for when engine/textgen/openai_backend.py lands: the bot must then be built with
    # that backend (not the scripted one) from llm.backend = "openai".
    if play.world.services.backend.name == DrillBackend.name:
        raise Skip("the drill cannot yet build the bot with the openai backend")
    server = play.shared.stash["openai"]
    await play.start()
    await play.act(play.world.alice, "I call out into the dark.")
    result = await play.slash(play.world.alice, "dm continue")
    if await play.turns() == 0:
        play.told(result, "cannot answer", "Something went wrong")
        assert len(await play.pending()) == 1, "the dropped turn took the action"
    server.mode = "ok"
    await play.goes_on(NARRATION)


# --- the drill ---
async def run_drill(names: list[str], shared: Shared | None = None, echo=print) -> dict:
    own = shared is None
    shared = shared or await asyncio.to_thread(Shared.open)
    outcomes: list[Outcome] = []
    try:
        for name in names:
            outcome = await run_fault(FAULTS[name], shared)
            outcomes.append(outcome)
            state = f"skipped: {outcome.skipped}" if outcome.skipped else ("ok" if outcome.passed else "FAILED")
            echo(f"{name:<24} {state} ({outcome.seconds:.1f} s)")
            for what in ("unhandled", "lost", "unclear", "problems"):
                for line in getattr(outcome, what):
                    echo(f"    {what}: {line}")
    finally:
        if own:
            shared.close()
    tried = [o for o in outcomes if not o.skipped]
    return {"drill": "faults", "faults_tried": len(tried), "passed": sum(o.passed for o in tried),
            "unhandled_errors": sum(len(o.unhandled) for o in tried), "actions_lost": sum(len(o.lost) for o in tried),
            "unclear_messages": sum(len(o.unclear) for o in tried),
            "apologies": sum(o.apologies for o in tried),
            "skipped": [f"{o.name}: {o.skipped}" for o in outcomes if o.skipped],
            "by_fault": {o.name: o.summary() for o in tried},
            "ok": all(o.passed for o in tried)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="fault name(s), comma-separated")
    parser.add_argument("--fast", action="store_true", help="only the faults that take a few seconds")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="the bot's warnings and errors on stderr")
    args = parser.parse_args(argv)
    if args.list:
        for f in FAULTS.values():
            print(f"{f.name:<24} {'fast' if f.fast else 'slow'}  {f.about}")
        return 0
    names = [n for group in args.only for n in group.split(",") if n] or [
        n for n, f in FAULTS.items() if f.fast or not args.fast]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    logging.getLogger().setLevel(logging.WARNING)
    if args.verbose:
        logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    else:  # the injected faults log on purpose; keep logging's last-resort printer off stderr
        logging.getLogger().addHandler(logging.NullHandler())
    summary = asyncio.run(run_drill(names))
    emit(summary, sort_keys=False, ensure_ascii=False)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
