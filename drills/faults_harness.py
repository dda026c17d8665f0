"""The faults drill's harness (drills/faults.py holds the faults and the CLI): the world every scenario
plays in and the readings taken after it.

- the world: the real bot (create_bot) over a fresh SQLite file inside SimCord's simulated Discord,
  the scripted text backend with injectable failures (DrillBackend), the MiniLM embedder and the
  tests' loopback picture server and translator, loaded once (Shared); Play, the verbs a scenario
  plays with; Fault, one scenario; run_fault, one scenario in a fresh world;
- the instruments a fault needs: a log book, a database locker, a server that comes up late on a port;
- the readings (unhandled errors, lost actions, unclear messages), as the drill's docstring says.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import socket
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bench.common import use_paths

use_paths(tests=True)  # the tests' helpers by module name (yandexfreetranslate owns `tests`)
import discord  # noqa: E402
import simcord  # noqa: E402
from aiohttp import web  # noqa: E402
from discord_world import ADMIN_ROLE, LEAKS, WRITING_MARK, World  # noqa: E402
from scripted_backend import ScriptedBackend  # noqa: E402
from sd_server import SDServer, ServerThread  # noqa: E402
from translate_server import TranslateServer  # noqa: E402

NARRATION = "The torchlight wavers, and somewhere below a door groans open."
HANDLER_LOGGERS = {"cogs.errors": "command ", "engine.jobs.runner": "job "}  # who logs a handled failure, how
# What the bot shows while it works (cogs/dm.py, cogs/pictures.py): left in a message when all is over,
# the table waits for something that never comes.
STILL_WORKING = (WRITING_MARK, "⏳ Waiting for the DM", "🎨 Looking at the scene", "🎨 Painting the scene",
                 "🎨 Waiting for the painter", "🎨 The picture waits", "✋ Cancelling the picture")


class Skip(Exception):
    """The scenario cannot run in this version (e.g. its backend is not built yet)."""


# --- the drill's instruments ---
class LogBook(logging.Handler):
    """Every record from WARNING up, kept for the scenario that is running."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class DrillBackend(ScriptedBackend):
    """The scripted backend writing `script`, with hooks run on the worker thread before each call."""

    def __init__(self) -> None:
        super().__init__(token_delay=0.0, reply_for=lambda text, settings: self.script.split(" "))
        self.script = NARRATION
        self.before_call: list[Callable[[], None]] = []
        self.fail_midway: list[tuple[int, BaseException]] = []  # (words streamed first, then this error)

    def generate_batch(self, requests, on_token, should_stop):
        while self.before_call:
            self.before_call.pop(0)()
        if self.fail_midway:
            words, error = self.fail_midway.pop(0)
            for k, word in enumerate(self.script.split(" ")[:words]):
                for i in range(len(requests)):
                    on_token(i, word if k == 0 else " " + word)
            raise error
        return super().generate_batch(requests, on_token, should_stop)


class Locker:
    """Another process's connection holding the database's write lock (BEGIN EXCLUSIVE) for a while."""

    def __init__(self, path: str, hold_s: float) -> None:
        self.path, self.hold_s = path, hold_s
        self.locked, self.released = threading.Event(), threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._hold, name="db-locker", daemon=True).start()
        if not self.locked.wait(10):
            raise RuntimeError("could not lock the database")

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            time.sleep(self.hold_s)
            conn.execute("COMMIT")
        finally:
            conn.close()
            self.released.set()

    async def wait_released(self) -> None:
        await asyncio.to_thread(self.released.wait, self.hold_s + 10)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortServer(ServerThread):
    """ServerThread on a chosen port: a service that is down first, then comes up where it was."""

    def __init__(self, server, port: int) -> None:
        super().__init__(server)
        self.port = port

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.server.app(), shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.server.url = f"http://127.0.0.1:{self.port}"


@dataclass
class Shared:
    """What every scenario uses: the embedder (loaded once), the loopback picture server and translator."""

    embedder: Any
    sd: SDServer
    translator: TranslateServer
    book: LogBook
    servers: list[ServerThread] = field(default_factory=list)
    stash: dict = field(default_factory=dict)  # what a fault's config hands to its scenario (a port...)

    @classmethod
    def open(cls, embedder=None) -> "Shared":
        from engine.memory.embeddings import Embedder

        book = LogBook()
        logging.getLogger().addHandler(book)
        sd_thread, tr_thread = ServerThread(SDServer(step_delay=0.02)), ServerThread(TranslateServer())
        shared = cls(embedder or Embedder.load("bundled:minilm"), sd_thread.start(), tr_thread.start(), book,
                     [sd_thread, tr_thread])
        gc.freeze()  # the models' objects out of the collector's way: each scenario's gc.collect stays cheap
        return shared

    def reset(self) -> None:
        """Healthy servers and an empty log book for the next scenario."""
        self.sd.mode, self.sd.user, self.sd.password, self.sd.hold_at = "ok", "", "", 0
        self.translator.mode = "ok"
        self.book.records.clear()
        self.stash.clear()

    def close(self) -> None:
        gc.unfreeze()
        logging.getLogger().removeHandler(self.book)
        for thread in self.servers:
            # a "slow" reply still sleeps in its server: cancelled, not destroyed pending at exit
            asyncio.run_coroutine_threadsafe(_cancel_others(), thread.loop).result(10)
            thread.stop()


async def _cancel_others() -> None:
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()


# --- one scenario's table ---
@dataclass
class Fault:
    name: str
    about: str
    play: Callable[["Play"], Awaitable[None]]
    expected: tuple[type[BaseException], ...] = ()  # what may reach the tree handler, logged and apologised for
    fast: bool = True
    config: Callable[[Shared], dict] = lambda shared: {}



@dataclass
class Outcome:
    name: str
    about: str
    passed: bool = False
    skipped: str = ""
    unhandled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # expectations of the scenario that did not hold
    apologies: int = 0  # failures the tree handler answered with the plain apology
    seconds: float = 0.0

    def summary(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("name", "skipped")}
        out["seconds"] = round(self.seconds, 2)
        return out


def shown_text(result: simcord.InteractionResult) -> str:
    """Everything an interaction's user was shown: the response and the followups."""
    texts = ([result.response.content] if result.response is not None else []) + [f.content for f in result.followups]
    return "\n".join(t for t in texts if t)


class Play:
    """The world of one scenario, with verbs that record what the checks need."""

    def __init__(self, world: World, backend: DrillBackend, shared: Shared, outcome: Outcome) -> None:
        self.world, self.env, self.backend, self.shared, self.outcome = world, world.env, backend, shared, outcome
        self.sent: list[discord.Message] = []  # players' actions, each must end up pending or narrated
        self.results: list[simcord.InteractionResult] = []
        self.campaign = None

    @property
    def store(self):
        return self.world.store

    @property
    def db_path(self) -> str:
        return self.world.services.config.storage.path

    async def start(self, language: str = "en") -> simcord.InteractionResult:
        result = await self.slash(self.world.gm, "dm start", premise="A crypt below the old abbey.", language=language)
        self.campaign = await self.store.campaign_for_channel(self.world.table.id)
        assert self.campaign is not None, "the campaign did not start"
        return result

    async def act(self, actor, text: str) -> discord.Message:
        message = await actor.send(self.world.table, text)
        self.sent.append(message)
        return message

    async def slash(self, actor, command: str, *, checked: bool = True, **options) -> simcord.InteractionResult:
        """A slash command in the table; `checked`: it must be acknowledged first, within 3 s (World.slash)."""
        verb = self.world.slash if checked else (lambda actor, channel, name, **o: actor.slash(channel, name, **o))
        result = await verb(actor, self.world.table, command, **options)
        self.results.append(result)
        return result

    def marked(self, message: discord.Message) -> bool:
        (current,) = [m for m in self.world.table.history() if m.id == message.id]
        return "✍️" in [str(r.emoji) for r in current.reactions]

    async def turns(self) -> int:
        return await self.store.turn_count(self.campaign.id)

    async def pending(self) -> list[str]:
        return [a.text for a in await self.store.pending_actions(self.campaign.id)]

    def told(self, result: simcord.InteractionResult, *needles: str) -> str:
        """What the user was shown; an unclear message when none of `needles` is in it."""
        shown = shown_text(result)
        if not any(n in shown for n in needles):
            self.outcome.unclear.append(f"expected one of {needles!r}, shown {shown[:200]!r}")
        return shown

    async def goes_on(self, script: str = "The story goes on, as stories do.") -> None:
        """Healed: a new action is stored and marked, and the next turn narrates everything pending."""
        self.backend.script = script
        message = await self.act(self.world.bob, "I keep watch by the stairs.")
        assert self.marked(message), "after healing, a new action was not marked as stored"
        before, waiting = await self.turns(), await self.store.pending_actions(self.campaign.id)
        result = await self.slash(self.world.alice, "dm continue")
        turn = await self.store.last_turn(self.campaign.id)
        assert await self.turns() == before + 1, "after healing, /dm continue committed no turn"
        assert [a.id for a in turn.actions] == [a.id for a in waiting], "the healed turn did not take the pending actions"
        assert await self.pending() == [], "actions still pending after the healed turn"
        self.told(result, turn.posted[:100])


# --- the checks every scenario gets ---
def caused_by(error: BaseException | None, kinds: tuple) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if kinds and isinstance(error, kinds):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def unhandled_errors(play: Play, expected: tuple) -> tuple[list[str], int]:
    """Errors that escaped the bot's handlers, and how many handled failures were apologised for."""
    found, ids, apologies = [], set(), 0
    for error in play.env.errors:  # listeners and views that raised: SimCord's record
        ids.add(id(error))
        found.append(f"escaped a handler: {type(error).__name__}: {error}")
    for record in play.shared.book.records:
        if record.levelno < logging.ERROR:
            continue
        error = record.exc_info[1] if record.exc_info else None
        prefix = HANDLER_LOGGERS.get(record.name)
        if prefix and record.getMessage().startswith(prefix) and caused_by(error, expected):
            apologies += record.name == "cogs.errors"
            continue
        if error is not None and id(error) in ids:
            continue
        if error is not None:
            ids.add(id(error))
        found.append(f"{record.name}: {record.getMessage()}"
                     + (f" ({type(error).__name__}: {error})" if error is not None else ""))
    return found, apologies


def lost_actions(play: Play) -> list[str]:
    """From the SQLite file itself: each player's action is pending or part of a committed turn."""
    lost = []
    with contextlib.closing(sqlite3.connect(play.db_path)) as conn:
        rows = {m: t for m, t in conn.execute("SELECT message_id, turn_id FROM actions")}
        turns = {t for (t,) in conn.execute("SELECT id FROM turns")}
        for (action_id, turn_id) in conn.execute("SELECT id, turn_id FROM actions WHERE turn_id IS NOT NULL"):
            if turn_id not in turns:
                lost.append(f"action {action_id} belongs to turn {turn_id}, which is gone")
    answered = {m.reference.message_id for m in play.world.bot_messages(play.world.table) if m.reference}
    for message in play.sent:  # one the bot could not store is lost unless its player was told so
        if message.id not in rows and message.id not in answered:
            lost.append(f"{message.content!r} was never stored, and its player was never told")
    return lost


def unclear_messages(play: Play) -> list[str]:
    found = []
    texts = [(m.author.id == play.env.bot.user.id, m.content) for m in play.world.all_messages()]
    for result in play.results:
        if result.response is not None:
            texts.append((True, result.response.content))
        texts += [(True, f.content) for f in result.followups]
    for by_bot, text in texts:
        if not by_bot or not text:
            continue
        if LEAKS.search(text):
            found.append(f"shows an error's insides: {text[:160]!r}")
        elif any(mark in text for mark in STILL_WORKING):
            found.append(f"stuck as still working: {text[-120:]!r}")
    return list(dict.fromkeys(found))


def bot_config(folder: str, extra: dict) -> Any:
    from bot.config import parse_config

    data = {"storage": {"path": os.path.join(folder, "dm.sqlite3")}, "llm": {"generation": {"max_new_tokens": 8}},
            "memory": {"summarize_every": 0}, "runner": {"batch_wait_ms": 5},
            "discord": {"admin_role": ADMIN_ROLE}}
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    return parse_config(data, "faults-drill")


async def run_fault(fault: Fault, shared: Shared) -> Outcome:
    """One scenario in a fresh world: fault, play, heal, play on; then the three readings."""
    from bot.app import create_bot

    outcome, began = Outcome(fault.name, fault.about), time.perf_counter()
    shared.reset()
    backend = DrillBackend()
    with tempfile.TemporaryDirectory(prefix=f"faults-{fault.name}-") as folder:
        play = None
        try:
            config = bot_config(folder, fault.config(shared))
            # the openai backend is built from the config, like the owner's bot; the others get the script
            models = {} if config.llm.backend == "openai" else {"text_model": backend}
            bot = create_bot(config, embed_model=shared.embedder, **models)
            try:
                # check_errors off: the drill reads SimCord's record of errors itself
                async with simcord.run(bot, settle_timeout=60, check_errors=False) as env:
                    play = Play(await World.create(env), backend, shared, outcome)
                    try:
                        await fault.play(play)
                    except Skip as skip:
                        outcome.skipped = str(skip)
                    except AssertionError as failed:
                        outcome.problems.append(str(failed) or "an expectation failed")
                    except Exception as exc:  # the drill's own step broke: that is a finding too
                        outcome.problems.append(f"the scenario broke: {type(exc).__name__}: {exc}")
                    if not outcome.skipped:
                        gc.collect()  # "exception was never retrieved" is logged when the future goes
                        outcome.unhandled, outcome.apologies = unhandled_errors(play, fault.expected)
                        outcome.lost = lost_actions(play)
                        outcome.unclear += unclear_messages(play)
            finally:
                if bot.services is not None:  # SimCord detaches a bot without closing it
                    services, bot.services = bot.services, None
                    await services.close()
        except Skip as skip:
            outcome.skipped = str(skip)
        except Exception as exc:
            outcome.problems.append(f"the table could not be set up: {type(exc).__name__}: {exc}")
    outcome.passed = not (outcome.skipped or outcome.unhandled or outcome.lost or outcome.unclear or outcome.problems)
    outcome.seconds = time.perf_counter() - began
    return outcome
