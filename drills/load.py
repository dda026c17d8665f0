"""Load drill: many channels ask the DM to continue at the same moment.

    .venv/bin/python drills/load.py [--channels 50] [--seed 1] [--real-model]

What is real: the bot from create_bot, discord.py driven through SimCord (no network), the runner
with the bot's default limits, SQLite in a temp file, the bundled MiniLM embedder (every turn is
embedded and recalled). What is scripted by default: the text model, through tests/scripted_backend.py
with a per-token sleep, so that a turn takes a known time and the queue really fills on any machine.
Its replies name the channels found in their prompt (`c007q-t3-w0 ...`), which is how a narration
shows which prompt it came from and whether a prompt crossed channels. `--real-model` uses the
bundled SmolLM2 instead (slow on a CPU; narrations are then checked only through their prompts).

Phases, each channel `c` playing its own campaign whose premise and actions carry the tag c{c:03d}q
(after one warm-up turn in a channel outside the drill, so one-time costs are not counted as waiting):
1. load:     every channel has 3 actions, then every channel's `/dm continue` is issued at once.
2. overflow: the model is held at a gate while a burst arrives: a few "hot" channels send more
             continues than `max_pending_per_channel` allows (with actions written between them),
             the others enough to pass `max_pending_total`; then the gate opens. The refused ones must
             get a clear message (no traceback text) and lose nothing.
3. drain:    every channel continues once more, which must consume every action still pending.

Checked against the SQLite file and the model's recorded prompts: every continue is answered by a
committed turn or refused clearly; a channel's continues get its turns in the order they were
issued; each channel's turns consume its actions in the order they were written (a prefix, the rest
pending); each turn's prompt holds the actions it consumed, in order, and only its own channel's
tags; no message shows another channel's narration; no action is lost; every interaction is
acknowledged within Discord's 3 seconds; nothing is logged as an error.
Reported: the spread of waiting times of phase 1 (wall clock from issuing `/dm continue` to the
last edit of its reply, time.perf_counter: SimCord virtualises time.monotonic) and peak RSS.
The last line of stdout is one JSON object; the exit code is 1 when anything failed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import re
import resource
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, when run as drills/load.py
from bench.common import TEST_MODEL_CACHE, emit, percentile, use_paths  # noqa: E402 (after the path)

# tests/ for SimCord's World and the scripted backend, imported by module name (see tests/conftest.py).
use_paths(tests=True)
from engine.textgen.base import TextBackend  # noqa: E402 (after the path)

TAG = re.compile(r"c(\d{3})q")
GATE_TIMEOUT_S = 120.0  # a gate that is never opened must not hang the drill
ACK_LIMIT_S = 3.0  # Discord drops an interaction that is not acknowledged within 3 s
PREMISES = ["a lantern-lit crypt below the old abbey", "a fish market at dawn", "a storm over the salt flats",
            "a lighthouse whose keeper vanished", "a caravan stuck at a mountain pass"]
DEEDS = ["light a torch", "guard the door", "read the inscription", "count the coins", "climb the wall",
         "whistle for the dog", "open the chest", "bargain with the guard", "hide behind the barrel"]


def tag(channel: int) -> str:
    return f"c{channel:03d}q"


def channels_in(text: str) -> set[int]:
    return {int(m) for m in TAG.findall(text)}


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """min/p50/p90/max by nearest rank, in seconds."""
    xs = sorted(values)
    if not xs:
        return {"min": None, "p50": None, "p90": None, "max": None}
    return {"min": round(xs[0], 3), "p50": round(percentile(xs, 50), 3), "p90": round(percentile(xs, 90), 3),
            "max": round(xs[-1], 3)}


# --- the text model, recorded and gated ---
class DrillModel(TextBackend):
    """A TextBackend around the text model: records every (prompt, output) and can hold calls at a gate."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.can_batch = inner, inner.name, inner.can_batch
        self.pairs: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.gate_timeouts = 0
        self.seconds = 0.0  # spent generating, the gate not included
        self._lock = threading.Lock()

    def render(self, prompt: Any) -> str:
        return self.inner.render(prompt)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate_batch(self, requests, on_token, should_stop) -> list[str]:  # the worker thread
        if not self.gate.wait(GATE_TIMEOUT_S):
            self.gate_timeouts += 1
        began = time.perf_counter()
        outputs = self.inner.generate_batch(requests, on_token, should_stop)
        with self._lock:
            self.seconds += time.perf_counter() - began
            self.pairs.extend(zip([r.text for r in requests], outputs))
        return outputs


class TimedEmbedder:
    """The embedder, counting the time its worker spends encoding (where a turn's time goes)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.seconds, self.calls = inner, 0.0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, texts):  # the embedder's worker thread
        began = time.perf_counter()
        try:
            return self._inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - began
            self.calls += 1


def scripted_model(token_delay: float) -> DrillModel:
    from scripted_backend import ScriptedBackend

    counter: Counter[str] = Counter()
    lock = threading.Lock()

    def reply(text: str, settings: Any) -> list[str]:
        # Named after the prompt's channels and numbered: every output is unique and tells its source.
        label = "+".join(tag(c) for c in sorted(channels_in(text))) or "nochannel"
        with lock:
            counter[label] += 1
            n = counter[label]
        return [f"{label}-t{n}-w{k}" for k in range(settings.max_new_tokens)]

    return DrillModel(ScriptedBackend(token_delay=token_delay, reply_for=reply))


# --- what happened, and the checks ---
@dataclass
class Continue:
    phase: str
    channel: int
    result: Any  # SimCord's InteractionResult, live
    issued: float  # perf_counter
    acked: float | None = None
    done: float | None = None
    outcome: str = ""  # answered | refused | unclear
    turn: int = 0  # the turn that answered it
    text: str = ""


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def fail(self, key: str, message: str) -> None:
        self.counts[key] += 1
        self.problems.append(message)


def is_clear_refusal(text: str) -> bool:
    """A queue-full answer as the players should read it: says it is busy and to try again, no internals."""
    from discord_world import LEAKS, WRITING_MARK

    return (text.startswith("⏳") and "try again" in text and "Waiting for the DM" not in text
            and WRITING_MARK not in text and not LEAKS.search(text))


def check_channel(report: Report, channel: int, written: Sequence[str], actions: Sequence[tuple[int, str, int | None]],
                  turns: Sequence[tuple[int, int, str]], pairs: Sequence[tuple[str, str]]) -> None:
    """One channel's story against what its players wrote and what the model was asked.

    `actions`: (id, text, turn_id) by id; `turns`: (id, number, narration) by number; `pairs`: every
    (prompt, output) the model produced, for all channels.
    """
    texts = [a[1] for a in actions]
    missing = Counter(written) - Counter(texts)
    for text in missing.elements():
        report.fail("lost", f"{tag(channel)}: action {text!r} is not in the database")
    for _, text, _ in actions:
        if channels_in(text) != {channel}:
            report.fail("crossed", f"{tag(channel)}: holds another channel's action {text!r}")
    if [t for t in texts if t in written] != [t for t in written if t in texts]:
        report.fail("order_violations", f"{tag(channel)}: actions stored in another order than written")

    by_turn: dict[int, list[tuple[int, str]]] = defaultdict(list)
    known = {t[0] for t in turns}
    for action_id, text, turn_id in actions:
        if turn_id is not None:
            by_turn[turn_id].append((action_id, text))
            if turn_id not in known:
                report.fail("lost", f"{tag(channel)}: action {text!r} points at a turn that is not there")
    consumed = [a for turn_id, *_ in turns for a in sorted(by_turn[turn_id])]
    if [a[0] for a in consumed] != [a[0] for a in actions[: len(consumed)]] or any(
            a[2] is not None for a in actions[len(consumed):]):
        report.fail("order_violations", f"{tag(channel)}: turns did not consume the actions oldest first: "
                    f"{[(n, [t for _, t in sorted(by_turn[i])]) for i, n, _ in turns]}")

    for turn_id, number, narration in turns:
        prompts = [p for p, out in pairs if narration and narration in out]
        if not prompts:
            report.fail("unmatched", f"{tag(channel)} turn {number}: no model output holds its narration")
            continue
        prompt = prompts[-1]
        if channels_in(prompt) != {channel}:
            report.fail("crossed", f"{tag(channel)} turn {number}: its prompt names channels "
                        f"{sorted(channels_in(prompt))}")
        mine = [t for _, t in sorted(by_turn[turn_id])]
        absent = [t for t in mine if t not in prompt]
        if absent:
            report.fail("unnarrated", f"{tag(channel)} turn {number}: consumed {absent} without them in its prompt")
        positions = [prompt.rfind(t) for t in mine if t in prompt]
        if positions != sorted(positions):
            report.fail("order_violations", f"{tag(channel)} turn {number}: the prompt holds its actions out of order")


def classify(report: Report, call: Continue, narrations: dict[int, list[tuple[int, str]]]) -> None:
    """Answered (its reply is an unclaimed committed turn of its channel), refused clearly, or unclear."""
    from discord_world import reply_text

    text = call.text = reply_text(call.result)
    own = narrations[call.channel]
    for k, (number, narration) in enumerate(own):
        if narration and text.startswith(narration[:1900]):
            del own[k]  # each committed turn answers one continue
            call.outcome, call.turn = "answered", number
            return
    if is_clear_refusal(text):
        call.outcome = "refused"
        report.counts["refused_channel" if "this channel" in text else "refused_total"] += 1
        return
    call.outcome = "unclear"
    report.fail("refused_unclear", f"{tag(call.channel)} ({call.phase}): /dm continue got {text[:200]!r}")


def check_reply_order(report: Report, calls: Sequence[Continue]) -> None:
    """A channel's continues are narrated in the order they were issued (one FIFO per channel)."""
    by_channel: dict[int, list[int]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.issued):
        if call.outcome == "answered":
            by_channel[call.channel].append(call.turn)
    for channel, numbers in by_channel.items():
        if numbers != sorted(numbers):
            report.fail("order_violations", f"{tag(channel)}: continues in issue order got turns {numbers}")


# --- driving the bot ---
class Drill:
    def __init__(self, env: Any, model: DrillModel, args: argparse.Namespace, report: Report) -> None:
        self.env, self.model, self.args, self.report = env, model, args, report
        self.rng = random.Random(args.seed)
        self.written: dict[int, list[str]] = defaultdict(list)
        self.continues: list[Continue] = []
        self.attempts = 0  # runner.submit calls, refused ones included
        self.peak_queue = 0

    async def setup(self) -> None:
        from discord_world import World

        self.world = world = await World.create(self.env)
        self.chans = [world.guild.create_text_channel(f"table-{i:03d}") for i in range(self.args.channels)]
        world.channels.extend(self.chans)
        self.players = [world.alice, world.bob]
        runner = world.services.runner
        submit = runner.submit

        def counting_submit(job):  # counts attempts, so the drill knows when a burst has fully arrived
            self.attempts += 1
            try:
                return submit(job)
            finally:
                self.peak_queue = max(self.peak_queue, runner.queue_length())

        runner.submit = counting_submit
        for i, channel in enumerate(self.chans):
            await world.slash(world.gm, channel, "dm start",
                              premise=f"{tag(i)}: {PREMISES[i % len(PREMISES)]}")

    def action(self, channel: int, label: str) -> str:
        text = f"{tag(channel)}-{label} I {self.rng.choice(DEEDS)}."
        self.written[channel].append(text)
        return text

    async def write(self, channel: int, label: str, player: int) -> None:
        await self.players[player].send(self.chans[channel], self.action(channel, label))

    async def burst(self, phase: str, plan: list[tuple[str, int, int, str]]) -> int:
        """Issue every step of `plan` without settling in between, so all are in flight at once (see
        slash_together in tests/test_discord.py: SimCord refuses overlapping verbs, so settling is
        switched off for the burst, SimCord internal Env._settle_internal). Returns the continues issued."""
        env, issued = self.env, 0

        async def no_settle(*args, **kwargs):
            return None

        env._settle_internal = no_settle
        try:
            for kind, channel, player, label in plan:
                actor, where = self.players[player], self.chans[channel]
                if kind == "continue":
                    began = time.perf_counter()
                    result = await actor.slash(where, "dm continue")
                    self.continues.append(Continue(phase, channel, result, began))
                    issued += 1
                else:
                    await actor.send(where, self.action(channel, label))
        finally:
            del env._settle_internal
        return issued

    async def wait_until(self, condition, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def run(self) -> dict[str, Any]:
        n = self.args.channels
        config = self.world.services.config.runner
        per_channel, total, batch = config.max_pending_per_channel, config.max_pending_total, config.batch_size
        timings: dict[str, float] = {}
        cpu: dict[str, dict[str, float]] = {}
        mark = lambda: (time.perf_counter(), time.thread_time(), time.process_time())  # noqa: E731

        def done(phase: str, began: tuple[float, float, float]) -> None:
            now = mark()
            timings[phase] = now[0] - began[0]
            # main: the event loop's thread (bot, discord.py, SimCord); process: every thread together
            cpu[phase] = {"main": round(now[1] - began[1], 2), "process": round(now[2] - began[2], 2)}

        # 0. warm-up, in a channel outside the drill: the first turn's one-time costs (the embedder's
        # first batches, the first recall) are not waiting caused by load.
        world = self.world
        await world.slash(world.gm, world.table, "dm start", premise="A warm-up table.")
        await world.alice.send(world.table, "I stretch.")
        await world.slash(world.alice, world.table, "dm continue")

        # 1. load: three actions everywhere, then every channel's continue at once.
        for i in range(n):
            for j in range(3):
                await self.write(i, f"a{j}", j % 2)
        order = list(range(n))
        self.rng.shuffle(order)
        began = mark()
        await self.burst("load", [("continue", i, self.rng.randrange(2), "") for i in order])
        await self.env.settle()
        done("load", began)

        # 2. overflow: a burst that cannot all fit, held at the gate until every submit was tried.
        for i in range(n):
            await self.write(i, "p0", 1)
        hot = list(range(min(3, n)))
        others = [i for i in range(n) if i not in hot]
        need = batch + total + 3 - len(hot) * (per_channel + 2)  # beyond what running + waiting can hold
        each = max(2, math.ceil(need / len(others))) if others else 0
        plan: list[tuple[str, int, int, str]] = []
        for i in hot:
            for j in range(per_channel + 2):
                plan += [("continue", i, j % 2, ""), ("action", i, (j + 1) % 2, f"b{j}")]
        plan += [("continue", i, j % 2, "") for j in range(each) for i in others]
        began, before = mark(), self.attempts
        self.model.gate.clear()
        try:
            issued = await self.burst("overflow", plan)
            arrived = await self.wait_until(lambda: self.attempts - before >= issued, 60)
        finally:
            self.model.gate.set()
        if not arrived:
            self.report.fail("hang", f"overflow: only {self.attempts - before} of {issued} continues reached the runner")
        await self.env.settle()
        done("overflow", began)

        # 3. drain: once more everywhere; afterwards nothing may be pending.
        began = mark()
        await self.burst("drain", [("continue", i, 0, "") for i in range(n)])
        await self.env.settle()
        done("drain", began)
        return {"phase_s": {k: round(v, 2) for k, v in timings.items()}, "cpu_s": cpu,
                "fits": {"load": n <= batch + total, "drain": n <= batch + total}}

    def collect(self) -> dict[str, Any]:
        """Read the world back: timings from SimCord's request log, the story from the SQLite file."""
        world, report = self.world, self.report
        times: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for at, entry in world.requests.since(0):
            parts = entry.path.strip("/").split("/")
            if parts[0] == "interactions" and parts[-1] == "callback" and len(parts) >= 4:
                times[parts[2]].append(("ack", at))
            elif parts[0] == "webhooks" and len(parts) >= 3:
                times[parts[2]].append(("edit", at))
        for call in self.continues:
            seen = times.get(call.result._interaction.token, [])  # SimCord internal: the interaction's token
            acks = [at for kind, at in seen if kind == "ack"]
            edits = [at for kind, at in seen if kind == "edit"]
            call.acked = acks[0] if acks else None
            call.done = edits[-1] if edits else None
            if call.acked is None:
                report.fail("unacknowledged", f"{tag(call.channel)} ({call.phase}): never acknowledged")
            elif call.acked - call.issued > ACK_LIMIT_S:
                report.fail("acks_late", f"{tag(call.channel)} ({call.phase}): acknowledged after "
                            f"{call.acked - call.issued:.1f} s")

        path = world.services.config.storage.path
        with contextlib.closing(sqlite3.connect(path)) as conn:
            campaigns = dict(conn.execute("SELECT channel_id, id FROM campaigns WHERE active = 1"))
            narrations: dict[int, list[str]] = {}
            pending = 0
            for i, channel in enumerate(self.chans):
                campaign = campaigns.get(channel.id)
                if campaign is None:
                    report.fail("lost", f"{tag(i)}: no campaign in the database")
                    narrations[i] = []
                    continue
                actions = conn.execute("SELECT id, text, turn_id FROM actions WHERE campaign_id = ? ORDER BY id",
                                       (campaign,)).fetchall()
                turns = conn.execute("SELECT id, number, narration FROM turns WHERE campaign_id = ? ORDER BY number",
                                     (campaign,)).fetchall()
                check_channel(report, i, self.written[i], actions, turns, self.model.pairs)
                narrations[i] = [(t[1], t[2]) for t in turns]
                pending += sum(a[2] is None for a in actions)
        for call in self.continues:
            classify(report, call, narrations)
        check_reply_order(report, self.continues)
        for i, left in narrations.items():
            for _, narration in left:
                report.fail("unclaimed_turns", f"{tag(i)}: turn {narration[:40]!r} answered no /dm continue")

        from discord_world import LEAKS
        for i, channel in enumerate(self.chans):
            for message in world.bot_messages(channel):
                if LEAKS.search(message.content):
                    report.fail("leaks", f"{tag(i)}: a message shows {message.content[:200]!r}")
                if channels_in(message.content) - {i}:
                    report.fail("crossed", f"{tag(i)}: a message shows another channel's story: "
                                f"{message.content[:120]!r}")
        for prompt, _ in self.model.pairs:
            if len(channels_in(prompt)) > 1:
                report.fail("crossed", f"a prompt holds channels {sorted(channels_in(prompt))}")
        return {"pending_left": pending}


async def play(args: argparse.Namespace, embedder: Any = None) -> dict[str, Any]:
    """The whole drill; `embedder` may be one loaded already (a test session's)."""
    from simcord import Env

    import cogs.render
    from bot.app import create_bot
    from bot.config import parse_config
    from engine.memory.embeddings import Embedder

    if args.real_model:
        from engine.textgen.transformers_backend import TransformersBackend
        model = DrillModel(TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=TEST_MODEL_CACHE))
    else:
        model = scripted_model(args.token_delay)
    embedder = TimedEmbedder(embedder or Embedder.load("bundled:minilm"))
    errors: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    keep = Keep(logging.ERROR)
    logging.getLogger().addHandler(keep)
    report = Report()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dm-load-") as tmp:
        runner = {k: v for k, v in {"max_pending_per_channel": args.max_per_channel,
                                    "max_pending_total": args.max_total}.items() if v}
        config = parse_config({"storage": {"path": str(Path(tmp) / "dm.sqlite3")},
                               "llm": {"cache_dir": TEST_MODEL_CACHE, "generation": {"max_new_tokens": args.tokens}},
                               "runner": runner})
        bot = create_bot(config, text_model=model, embed_model=embedder)
        env = Env(bot, settle_timeout=args.settle_timeout)
        drill = Drill(env, model, args, report)
        # The renderer throttles edits by time.monotonic, which SimCord virtualises; the wall clock
        # gives it the edit rate it has in production (as the streaming test in test_discord.py does).
        render_time, cogs.render.time = cogs.render.time, SimpleNamespace(monotonic=time.perf_counter)
        await env.start()
        try:
            with env.time_context():
                await drill.setup()
                try:
                    out.update(await drill.run())
                except TimeoutError as exc:  # SimCord's settle gave up: something never finished
                    report.fail("hang", f"the bot did not settle: {str(exc)[:300]}")
                out.update(drill.collect())
                out["env_errors"] = len(env.errors)
        finally:
            model.gate.set()
            cogs.render.time = render_time
            await env.shutdown()
            services, bot.services = bot.services, None  # SimCord detaches a bot without closing it
            if services is not None:
                await services.close()
            logging.getLogger().removeHandler(keep)
    for record in errors:
        report.fail("errors_logged", f"logged: {record.getMessage()[:200]}")
    runner_config = config.runner
    calls, c = drill.continues, report.counts
    load = [call for call in calls if call.phase == "load"]
    waits = [call.done - call.issued for call in load if call.outcome == "answered" and call.done is not None]
    fits = out.pop("fits", {})
    for phase in ("load", "drain"):
        if fits.get(phase) and any(call.outcome != "answered" for call in calls if call.phase == phase):
            report.fail("unanswered", f"{phase}: a continue that fitted in the queue was not answered")
    # The total limit can only be reached when the channels' own limits add up to more than it.
    total_reachable = args.channels * runner_config.max_pending_per_channel > runner_config.max_pending_total
    if c["refused_channel"] == 0 or (c["refused_total"] == 0 and total_reachable):
        report.fail("overflow_not_provoked", f"overflow refused {c['refused_channel']} by channel, "
                    f"{c['refused_total']} by total")
    if out.get("pending_left") and fits.get("drain"):
        report.fail("left_pending", f"{out['pending_left']} actions still pending after the drain")
    summary = {
        "drill": "load", "channels": args.channels, "seed": args.seed, "model": model.name,
        "limits": {"max_pending_per_channel": runner_config.max_pending_per_channel,
                   "max_pending_total": runner_config.max_pending_total, "batch_size": runner_config.batch_size},
        "continues": len(calls), "answered": sum(call.outcome == "answered" for call in calls),
        "refused": sum(call.outcome == "refused" for call in calls),
        "refused_by": {"channel": c["refused_channel"], "total": c["refused_total"]},
        "refused_unclear": c["refused_unclear"], "order_violations": c["order_violations"], "lost": c["lost"],
        "crossed": c["crossed"], "unnarrated": c["unnarrated"], "unmatched": c["unmatched"],
        "unclaimed_turns": c["unclaimed_turns"], "left_pending": c["left_pending"],
        "unanswered": c["unanswered"], "unacknowledged": c["unacknowledged"], "acks_late": c["acks_late"],
        "leaks": c["leaks"], "errors_logged": c["errors_logged"], "env_errors": out.get("env_errors", 0),
        "hang": c["hang"], "gate_timeouts": model.gate_timeouts, "overflow_not_provoked": c["overflow_not_provoked"],
        "actions": sum(len(v) for v in drill.written.values()), "model_calls": len(model.pairs),
        "peak_queue": drill.peak_queue, "phase_s": out.get("phase_s", {}), "cpu_s": out.get("cpu_s", {}),
        "busy_s": {"model": round(model.seconds, 2), "embedder": round(embedder.seconds, 2),
                   "embed_calls": embedder.calls},
        "wait_s": percentiles(waits),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
    }
    failed = [k for k in ("refused_unclear", "order_violations", "lost", "crossed", "unnarrated", "unmatched",
                          "unclaimed_turns", "left_pending", "unanswered", "unacknowledged", "acks_late", "leaks",
                          "errors_logged", "env_errors", "hang", "gate_timeouts", "overflow_not_provoked")
              if summary[k]]
    summary["ok"] = not failed and summary["answered"] + summary["refused"] == summary["continues"]
    summary["failed"] = failed
    summary["problems"] = report.problems[:12]
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real-model", action="store_true", help="the bundled SmolLM2 instead of the scripted model")
    parser.add_argument("--token-delay", type=float, default=0.02, help="scripted model: seconds per token step")
    parser.add_argument("--tokens", type=int, default=12, help="max_new_tokens of a narration")
    parser.add_argument("--max-per-channel", type=int, default=0, help="runner.max_pending_per_channel (0: the default)")
    parser.add_argument("--max-total", type=int, default=0, help="runner.max_pending_total (0: the default)")
    parser.add_argument("--settle-timeout", type=float, default=900.0, help="seconds SimCord waits for the bot")
    args = parser.parse_args(argv)
    if args.channels < 1 or args.channels > 999:
        parser.error("--channels must be between 1 and 999")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = asyncio.run(play(args))
    except Exception as exc:  # the drill itself broke: still one JSON line, and a failing exit code
        traceback.print_exc()
        summary = {"drill": "load", "channels": args.channels, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    for problem in summary.get("problems", []):
        print("problem:", problem)
    emit(summary, sort_keys=False)
    return 0 if summary.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
