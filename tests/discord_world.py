"""A small Discord world for the bot's SimCord tests, and the readings the tests take from it.

Import it by module name (`from discord_world import World`), never as `tests.x`.

Two SimCord facts shape these helpers:
- SimCord virtualises `time.monotonic` (and the event loop's clock) inside the bot's code: it only
  moves with the bot's own sleeps or `env.advance_time`. `time.perf_counter` stays the wall clock,
  so every real-time reading here uses it.
- every actor verb settles the bot before it returns, and the env refuses two verbs at once.
"""
from __future__ import annotations

import contextlib
import fnmatch
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import discord
from simcord import ChannelHandle, Env, GuildHandle, InteractionResult, MemberActor, RoleHandle

from engine.textgen.base import GenRequest, StopCheck, TextBackend, TokenSink

ADMIN_ROLE = "Game Master"
WRITING_MARK = "the DM is writing"
# What a traceback or a raw exception would leave in a message a user can read.
LEAKS = re.compile(r"Traceback|File \"|\b\w+(Error|Exception)\b|\bline \d+, in\b")


class TimedRequests(list):
    """SimCord's record of the bot's REST calls, with the wall-clock time of each one beside it.

    It replaces `env.backend.http_requests` (a plain list SimCord appends to); hooks run as each
    request is made, before SimCord answers it, so a test can look at the world at that moment.
    """

    def __init__(self, existing: Sequence) -> None:
        super().__init__(existing)
        self.times = [0.0] * len(existing)
        self.hooks: list[Callable[[object], None]] = []

    def append(self, entry) -> None:  # type: ignore[override]
        super().append(entry)
        self.times.append(time.perf_counter())
        for hook in self.hooks:
            hook(entry)

    def since(self, start: int, method: str = "*", path: str = "*") -> list[tuple[float, object]]:
        return [(self.times[i], e) for i, e in enumerate(self) if i >= start
                and method in ("*", e.method) and fnmatch.fnmatch(e.path, path)]


class ModelStandIn(TextBackend):
    """The session's real text model behind a thin recorder (a TextBackend itself).

    By default every generate call goes to the real model. `script` makes it write that fixed text
    instead, streamed piece by piece through on_token like a model would: it stands in for "the
    model wrote this" where the tiny real model cannot be steered cheaply (5000 characters, exact
    mentions, the DM's markers); `replies` scripts the next calls one by one. `token_delay` slows either kind of output down (seconds per piece, on the worker
    thread) so timing tests do not depend on how fast this machine is.
    """

    def __init__(self, model: TextBackend) -> None:
        self.model = model
        self.name = model.name
        self.can_batch = model.can_batch
        self.script: str | None = None
        self.replies: list[str] = []  # scripted replies for the next calls, one each (then `script` again)
        self.token_delay = 0.0
        self.calls: list[list[str]] = []  # the prompts of each generate_batch call
        self._lock = threading.Lock()

    def render(self, prompt) -> str:
        return self.model.render(prompt)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def generate_batch(self, requests: Sequence[GenRequest], on_token: TokenSink,
                       should_stop: StopCheck) -> list[str]:
        with self._lock:
            self.calls.append([r.text for r in requests])

        def slow_token(i: int, piece: str) -> None:
            if self.token_delay:
                time.sleep(self.token_delay)
            on_token(i, piece)

        with self._lock:
            script = self.replies.pop(0) if self.replies else self.script
        if script is None:
            return self.model.generate_batch(requests, slow_token, should_stop)
        pieces = re.findall(r"\s*\S+", script)
        outputs = [""] * len(requests)
        for piece in pieces:
            for i in range(len(requests)):
                if not should_stop(i):
                    outputs[i] += piece
                    slow_token(i, piece)
        return outputs


@dataclass
class World:
    """One guild: a campaign channel, a second channel, a Game Master, players and a bot account."""

    env: Env
    guild: GuildHandle
    gm_role: RoleHandle
    mods_role: RoleHandle
    table: ChannelHandle
    side: ChannelHandle
    gm: MemberActor  # has the configured admin role (and no Manage Server)
    mod: MemberActor  # has Manage Server (and not the role)
    alice: MemberActor  # plain players
    bob: MemberActor
    requests: TimedRequests
    channels: list[ChannelHandle] = field(default_factory=list)
    accepted_logs: set[int] = field(default_factory=set)  # ids of logged errors a test caused on purpose

    @classmethod
    async def create(cls, env: Env) -> "World":
        await env.bot.tree.sync()  # strict_sync: only synced commands can be invoked
        requests = TimedRequests(env.backend.http_requests)
        env.backend.http_requests = requests
        guild = env.create_guild("Tavern")
        gm_role = guild.create_role(ADMIN_ROLE)
        mods_role = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
        table = guild.create_text_channel("table")
        side = guild.create_text_channel("side")
        gm = guild.add_member(env.create_user("gm"), roles=[gm_role], nick="Game Master Gil")
        mod = guild.add_member(env.create_user("mod"), roles=[mods_role])
        alice = guild.add_member(env.create_user("alice"), nick="Aria")
        bob = guild.add_member(env.create_user("bob"), nick="Bram")
        return cls(env, guild, gm_role, mods_role, table, side, gm, mod, alice, bob, requests, [table, side])

    @property
    def services(self):
        return self.env.bot.services

    @property
    def store(self):
        return self.env.bot.services.store

    def thread(self, parent: ChannelHandle, name: str, owner: MemberActor) -> ChannelHandle:
        """A public thread under `parent`, as a member would open it (SimCord has no public builder
        for threads a user creates, so this goes through its backend)."""
        channel = ChannelHandle(self.env, self.guild, self.env.backend.create_thread(parent.id, name, owner.id))
        self.channels.append(channel)
        return channel

    # --- acting, with the interaction lifecycle checked every time ---
    async def slash(self, actor: MemberActor, channel: ChannelHandle, command: str, /,
                    **options) -> InteractionResult:
        start, began = len(self.requests), time.perf_counter()
        result = await actor.slash(channel, command, **options)
        self._check_acknowledged(start, began, f"/{command}")
        return result

    async def click(self, actor: MemberActor, message, label: str) -> InteractionResult:
        start, began = len(self.requests), time.perf_counter()
        result = await actor.click(message, label=label)
        self._check_acknowledged(start, began, f"button {label!r}")
        return result

    def _check_acknowledged(self, start: int, began: float, what: str) -> None:
        """The first thing the bot did was answer the interaction: deferred (type 5) or answered at
        once (4 a message, 7 an update of the clicked message), within Discord's 3 seconds."""
        callbacks = self.requests.since(start, "POST", "/interactions/*/callback")
        assert callbacks, f"{what} was never acknowledged"
        at, entry = callbacks[0]
        assert entry.json["type"] in (4, 5, 7), (what, entry.json)
        assert at - began < 3.0, f"{what} was acknowledged after {at - began:.1f} s"

    # --- reading the world back ---
    def bot_messages(self, channel: ChannelHandle) -> list[discord.Message]:
        return [m for m in channel.history() if m.author.id == self.env.bot.user.id]

    def sent_texts(self) -> list[str]:
        """Every text the bot sent or edited into a message so far (interaction replies too)."""
        texts = []
        for entry in self.requests:
            body = getattr(entry, "json", None)
            body = body if isinstance(body, dict) else {}
            data = body.get("data") if isinstance(body.get("data"), dict) else body
            if entry.method in ("POST", "PATCH") and isinstance(data.get("content"), str):
                texts.append(data["content"])
        return texts

    def all_messages(self) -> list[discord.Message]:
        return [m for channel in self.channels for m in channel.history()]

    def assert_no_leaks(self) -> None:
        """No message anywhere shows a traceback or an exception's name."""
        for message in self.all_messages():
            assert not LEAKS.search(message.content), message.content

    def pending_in_db(self) -> list[str]:
        """The pending actions' texts, read with a separate SQLite connection (committed rows only)."""
        with contextlib.closing(sqlite3.connect(self.services.config.storage.path)) as conn:
            return [row[0] for row in conn.execute("SELECT text FROM actions WHERE turn_id IS NULL ORDER BY id")]


def reply_text(result: InteractionResult) -> str:
    """What the user sees as the answer: the (edited) original reply, else the last followup."""
    if result.response is not None and result.response.content:
        return result.response.content
    return result.followups[-1].content if result.followups else ""


def assert_pieces_of(parts: Sequence[str], text: str) -> None:
    """`parts`, in order, are `text` cut into pieces: only whitespace is lost at each cut."""
    position = 0
    for part in parts:
        index = text.index(part, position)
        assert not text[position:index].strip(), f"text skipped before {part[:40]!r}"
        position = index + len(part)
    assert not text[position:].strip(), "the end of the text is missing"
