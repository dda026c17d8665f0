"""The job runner: per-channel order, fairness across channels, bounds, batching, cancelling, failures.

Most tests drive a real Runner and a real ModelWorker thread over ScriptedBackend (tests/scripted_backend.py);
one test batches three channels through the real bundled SmolLM2. Every await that could hang on a
bug is wrapped in asyncio.wait_for, so a broken runner fails a test instead of stalling the suite.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
import pytest_asyncio

from engine.errors import Busy, Cancelled, Unavailable
from engine.generation import GenerationSettings
from engine.jobs.job import Job, JobHandle
from engine.jobs.runner import JobContext, Runner
from engine.textgen.base import Prompt, TextBackend
from engine.jobs.worker import ModelWorker
from scripted_backend import Die, ScriptedBackend, scripted_reply

pytestmark = pytest.mark.asyncio
WAIT = 5.0  # seconds: far longer than anything here should take


def job(channel: int, text: str, tokens: int = 4, **payload: Any) -> Job:
    return Job(campaign_id=channel, channel_id=channel, payload={"text": text, "tokens": tokens, **payload})


def settings_of(j: Job) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=j.payload["tokens"], **j.payload.get("settings", {}))


async def generate_handler(j: Job, ctx: JobContext) -> str:
    return await ctx.generate(j.payload["text"], settings_of(j))


async def result(handle: JobHandle, timeout: float = WAIT) -> Any:
    return await asyncio.wait_for(handle.result(), timeout)


async def outcome(handle: JobHandle, timeout: float = WAIT) -> Any:
    """The result, or the exception instance the job ended with."""
    try:
        return await result(handle, timeout)
    except asyncio.TimeoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc


async def collect(handle: JobHandle, timeout: float = WAIT) -> list[str]:
    """Every text handle.updates() yielded (the job must succeed)."""

    async def run() -> list[str]:
        return [text async for text in handle.updates()]

    return await asyncio.wait_for(run(), timeout)


async def until(condition, timeout: float = WAIT, what: str = "condition") -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Rig:
    """A runner, its worker and its backend; the fixture closes them after the test."""

    def __init__(self) -> None:
        self.made: list[tuple[Runner, ModelWorker]] = []

    async def make(
        self, handler=generate_handler, backend: ScriptedBackend | None = None, *, loader=None, **runner_kw
    ) -> tuple[Runner, ScriptedBackend, ModelWorker]:
        backend = backend or ScriptedBackend()
        worker: ModelWorker = ModelWorker("text", loader or (lambda: backend))
        await asyncio.wait_for(worker.start(), WAIT)
        runner = Runner(handler, worker, **runner_kw)
        self.made.append((runner, worker))
        return runner, backend, worker

    async def close(self) -> None:
        for runner, worker in self.made:
            await asyncio.wait_for(runner.close(1.0), 15)
            await asyncio.wait_for(worker.stop(), 15)


@pytest_asyncio.fixture
async def rig():
    rig = Rig()
    yield rig
    await rig.close()


def runner_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("runner-", "job-")) and not t.done()]


# --- jobs and handles ---------------------------------------------------------------------------

async def test_job_is_plain_data_and_handle_streams_then_ends_with_result(rig):
    runner, backend, _ = await rig.make()
    j = job(1, "hello", tokens=6)
    assert dataclasses.is_dataclass(j)
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.channel_id = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        Job(1, 1, kind="dance")

    handle = runner.submit(j)
    assert isinstance(handle, JobHandle) and handle.job is j
    seen = await collect(handle)
    expected = scripted_reply("hello", GenerationSettings(max_new_tokens=6))
    assert await result(handle) == expected
    assert seen[-1] == expected and handle.text == expected and handle.done
    assert len(seen) >= 3, f"the text should arrive in pieces, got {seen!r}"
    assert all(b.startswith(a) and b != a for a, b in zip(seen, seen[1:])), seen
    # generate ran on the model worker thread, never on the event loop's
    assert backend.calls[0].thread.startswith("model-text")
    assert backend.calls[0].thread != threading.current_thread().name


async def test_handle_updates_end_with_the_jobs_error(rig):
    async def handler(j, ctx):
        await ctx.generate(j.payload["text"], settings_of(j))
        raise ValueError("the dragon ate the prompt")

    runner, _, _ = await rig.make(handler)
    handle = runner.submit(job(1, "x", tokens=3))
    seen: list[str] = []
    with pytest.raises(ValueError, match="dragon"):
        async with asyncio.timeout(WAIT):
            async for text in handle.updates():
                seen.append(text)
    assert seen and seen[-1] == scripted_reply("x", GenerationSettings(max_new_tokens=3))


async def test_updates_deliver_the_latest_text_even_to_a_slow_reader(rig):
    """Tokens that arrive while the reader is busy must be yielded without waiting for the job to end."""
    generated, gate = asyncio.Event(), asyncio.Event()

    async def handler(j, ctx):
        text = await ctx.generate(j.payload["text"], settings_of(j))
        generated.set()
        await gate.wait()  # e.g. translating or storing the turn: the job is not done yet
        return text

    runner, _, _ = await rig.make(handler)
    handle = runner.submit(job(1, "slow", tokens=8))
    expected = scripted_reply("slow", GenerationSettings(max_new_tokens=8))
    seen: list[str] = []

    async def read() -> None:
        async for text in handle.updates():
            seen.append(text)
            await asyncio.sleep(0.05)  # slower than the tokens

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(generated.wait(), WAIT)
        await until(lambda: seen and seen[-1] == expected, 2.0, "the reader to see the whole text")
        assert not handle.done
    finally:
        gate.set()
        await asyncio.wait_for(reader, WAIT)
    assert await result(handle) == expected


# --- order and fairness -------------------------------------------------------------------------

async def test_a_channels_jobs_run_one_after_another_in_submission_order(rig):
    events: list[tuple[str, str]] = []

    async def handler(j, ctx):
        events.append(("start", j.payload["text"]))
        text = await ctx.generate(j.payload["text"], settings_of(j))
        await asyncio.sleep(0.005)
        events.append(("end", j.payload["text"]))
        return text

    runner, _, _ = await rig.make(handler, ScriptedBackend(token_delay=0.003), batch_size=4)
    names = [f"t{k}" for k in range(6)]
    handles = [runner.submit(job(7, name, tokens=3)) for name in names[:3]]
    await until(lambda: events, what="the first job to start")
    for name in names[3:]:  # more submits (and scheduler wake-ups) while the channel is busy
        handles.append(runner.submit(job(7, name, tokens=3)))
        await asyncio.sleep(0.004)
    assert [await result(h) for h in handles] == [scripted_reply(n, GenerationSettings(max_new_tokens=3)) for n in names]
    assert events == [(kind, name) for name in names for kind in ("start", "end")]


@pytest.mark.parametrize("batch_size", [1, 4])
async def test_a_single_job_is_not_starved_by_a_channel_with_twenty(rig, batch_size):
    events: list[tuple[str, str]] = []

    async def handler(j, ctx):
        events.append(("start", j.payload["text"]))
        text = await ctx.generate(j.payload["text"], settings_of(j))
        events.append(("end", j.payload["text"]))
        return text

    runner, _, _ = await rig.make(
        handler, ScriptedBackend(token_delay=0.005), batch_size=batch_size, max_pending_per_channel=20
    )
    busy = [runner.submit(job(1, f"a{k}", tokens=20)) for k in range(20)]  # 0.1 s each
    await until(lambda: events, what="the busy channel's first job to start")
    lone = runner.submit(job(2, "b0", tokens=4))  # arrives while a0 runs
    await result(lone)
    starts = [text for kind, text in events if kind == "start"]
    # a0 was running and cannot be pre-empted, but no other job of the busy channel goes first
    assert starts.index("b0") == 1, events
    if batch_size == 1:
        assert events.index(("end", "a0")) < events.index(("start", "b0")), events
    else:  # a free slot: b0 runs beside a0 at once
        assert events.index(("start", "b0")) < events.index(("end", "a0")), events
    for handle in busy:
        handle.cancel()
    busy_order = [text for text in starts if text != "b0"]
    assert busy_order == [f"a{k}" for k in range(len(busy_order))]


@pytest.mark.parametrize("batch_size", [1, 4])
async def test_channels_submitted_together_take_turns(rig, batch_size):
    starts: list[str] = []

    async def handler(j, ctx):
        starts.append(j.payload["text"])
        return await ctx.generate(j.payload["text"], settings_of(j))

    runner, _, _ = await rig.make(handler, batch_size=batch_size, max_pending_per_channel=20)
    busy = [runner.submit(job(1, f"a{k}", tokens=2)) for k in range(20)]
    lone = runner.submit(job(2, "b0", tokens=2))
    await result(lone)
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in busy)), WAIT)
    assert starts.index("b0") == 1, starts
    assert [s for s in starts if s != "b0"] == [f"a{k}" for k in range(20)]


# --- bounds -------------------------------------------------------------------------------------

async def test_pending_limits_refuse_at_once_and_waiting_jobs_know_their_place(rig):
    gate = asyncio.Event()

    async def handler(j, ctx):
        await gate.wait()
        return j.payload["text"]

    runner, _, _ = await rig.make(handler, batch_size=2, max_pending_per_channel=2, max_pending_total=3)
    a0 = runner.submit(job(1, "a0"))
    await until(lambda: a0.started, what="a0 to start")
    a1, a2 = runner.submit(job(1, "a1")), runner.submit(job(1, "a2"))
    assert (a0.position(), a1.position(), a2.position()) == (0, 1, 2)
    assert runner.queue_length(1) == 2

    with pytest.raises(Busy) as per_channel:
        runner.submit(job(1, "a3"))
    assert per_channel.value.queue_length == 2

    b0 = runner.submit(job(2, "b0"))  # another channel still gets in: it runs at once (batch_size=2)
    await until(lambda: b0.started, what="b0 to start")
    b1 = runner.submit(job(2, "b1"))
    assert runner.queue_length() == 3 and b1.position() == 1
    with pytest.raises(Busy) as total:
        runner.submit(job(3, "c0"))
    assert total.value.queue_length == 3

    gate.set()
    assert [await result(h) for h in (a0, a1, a2, b0, b1)] == ["a0", "a1", "a2", "b0", "b1"]
    assert runner.queue_length() == 0
    assert await result(runner.submit(job(3, "c0"))) == "c0"  # room again


async def test_position_moves_up_as_jobs_finish(rig):
    gates = [asyncio.Event() for _ in range(3)]

    async def handler(j, ctx):
        await gates[j.payload["n"]].wait()
        return j.payload["n"]

    runner, _, _ = await rig.make(handler)
    handles = [runner.submit(job(1, f"a{n}", n=n)) for n in range(3)]
    await until(lambda: handles[0].started, what="the first job to start")
    assert [h.position() for h in handles] == [0, 1, 2]
    gates[0].set()
    await until(lambda: handles[1].started, what="the second job to start")
    assert [h.position() for h in handles] == [0, 0, 1]
    gates[1].set()
    gates[2].set()
    assert [await result(h) for h in handles] == [0, 1, 2]


# --- batching -----------------------------------------------------------------------------------

async def test_jobs_of_different_channels_ready_together_share_one_generate_call(rig):
    runner, backend, _ = await rig.make(batch_size=4, batch_wait_ms=500)
    handles = [runner.submit(job(c, f"ch{c}", tokens=5)) for c in range(4)]
    streams = await asyncio.wait_for(asyncio.gather(*(collect(h) for h in handles)), WAIT)
    assert backend.call_sizes == [4]
    assert sorted(backend.calls[0].texts) == ["ch0", "ch1", "ch2", "ch3"]
    for c, (handle, seen) in enumerate(zip(handles, streams)):
        expected = scripted_reply(f"ch{c}", GenerationSettings(max_new_tokens=5))
        assert await result(handle) == expected == seen[-1]
        assert len(seen) > 1  # it streamed, not one lump


async def test_different_settings_go_into_one_batch(rig):
    runner, backend, _ = await rig.make(batch_size=3, batch_wait_ms=500)
    variants = [
        {"tokens": 3, "settings": {"temperature": 0.3}},
        {"tokens": 7, "settings": {"do_sample": False}},
        {"tokens": 5, "settings": {"top_k": 5, "repetition_penalty": 1.3}},
    ]
    jobs = [job(c, f"s{c}", **v) for c, v in enumerate(variants)]
    handles = [runner.submit(j) for j in jobs]
    results = [await result(h) for h in handles]
    assert backend.call_sizes == [3]
    assert len(set(backend.calls[0].settings)) == 3
    assert {(t, s) for t, s in zip(backend.calls[0].texts, backend.calls[0].settings)} == {
        (j.payload["text"], settings_of(j)) for j in jobs
    }
    assert [len(r.split()) for r in results] == [3, 7, 5]


async def test_more_ready_channels_than_the_batch_size_take_several_calls(rig):
    runner, backend, _ = await rig.make(batch_size=4, batch_wait_ms=500)
    handles = [runner.submit(job(c, f"ch{c}", tokens=3)) for c in range(6)]
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WAIT)
    assert backend.call_sizes == [4, 2]
    assert sorted(t for call in backend.calls for t in call.texts) == [f"ch{c}" for c in range(6)]


async def test_a_backend_that_cannot_batch_gets_one_request_per_call(rig):
    runner, backend, _ = await rig.make(backend=ScriptedBackend(can_batch=False), batch_size=3, batch_wait_ms=500)
    handles = [runner.submit(job(c, f"ch{c}", tokens=4)) for c in range(3)]
    streams = await asyncio.wait_for(asyncio.gather(*(collect(h) for h in handles)), WAIT)
    assert backend.call_sizes == [1, 1, 1]
    assert sorted(call.texts[0] for call in backend.calls) == ["ch0", "ch1", "ch2"]
    for c, (handle, seen) in enumerate(zip(handles, streams)):
        expected = scripted_reply(f"ch{c}", GenerationSettings(max_new_tokens=4))
        assert await result(handle) == expected == seen[-1] and len(seen) > 1


# --- cancelling ---------------------------------------------------------------------------------

async def test_cancelling_a_waiting_job_frees_its_slot_at_once(rig):
    gate = asyncio.Event()
    ran: list[str] = []

    async def handler(j, ctx):
        ran.append(j.payload["text"])
        await gate.wait()
        return j.payload["text"]

    runner, _, _ = await rig.make(handler, max_pending_per_channel=2)
    a0 = runner.submit(job(1, "a0"))
    await until(lambda: a0.started, what="a0 to start")
    a1, a2 = runner.submit(job(1, "a1")), runner.submit(job(1, "a2"))
    a1.cancel()
    with pytest.raises(Cancelled):
        await result(a1, 1.0)  # answered now, not when a0 is done
    assert runner.queue_length(1) == 1 and a2.position() == 1
    a3 = runner.submit(job(1, "a3"))  # the slot was freed: no Busy
    gate.set()
    assert [await result(h) for h in (a0, a2, a3)] == ["a0", "a2", "a3"]
    assert ran == ["a0", "a2", "a3"]


async def test_cancelling_during_generation_stops_only_that_row(rig):
    runner, backend, _ = await rig.make(backend=ScriptedBackend(token_delay=0.005), batch_size=2, batch_wait_ms=500)
    long = runner.submit(job(1, "long", tokens=400))  # 2 s if nobody stops it
    short = runner.submit(job(2, "short", tokens=40))
    after = runner.submit(job(1, "after", tokens=2))
    await until(lambda: long.text, what="the long job to stream")
    long.cancel()
    with pytest.raises(Cancelled):
        await result(long, 1.5)
    assert await result(short) == scripted_reply("short", GenerationSettings(max_new_tokens=40))
    assert await result(after) == scripted_reply("after", GenerationSettings(max_new_tokens=2))
    first = backend.calls[0]
    assert sorted(first.texts) == ["long", "short"]
    row = first.texts.index("long")
    assert first.stopped == {row}
    assert 0 < len(first.outputs[row].split()) < 400


async def test_cancel_channel_cancels_its_running_and_waiting_jobs(rig):
    runner, backend, _ = await rig.make(backend=ScriptedBackend(token_delay=0.005), batch_size=2)
    a = [runner.submit(job(1, f"a{k}", tokens=400 if k == 0 else 2)) for k in range(3)]
    b = runner.submit(job(2, "b0", tokens=30))
    await until(lambda: a[0].text, what="the first job to stream")
    assert runner.cancel_channel(1) == 3
    for handle in a:
        with pytest.raises(Cancelled):
            await result(handle, 1.5)
    assert await result(b) == scripted_reply("b0", GenerationSettings(max_new_tokens=30))
    assert not any(t in ("a1", "a2") for call in backend.calls for t in call.texts)
    assert runner.cancel_channel(1) == 0
    assert await result(runner.submit(job(1, "a3", tokens=2))) == scripted_reply("a3", GenerationSettings(max_new_tokens=2))


# --- failures -----------------------------------------------------------------------------------

async def test_a_failing_generate_call_fails_exactly_its_jobs(rig):
    runner, backend, _ = await rig.make(batch_size=2, batch_wait_ms=500)
    backend.fail_next(RuntimeError("out of memory"))
    handles = {c: runner.submit(job(c, f"ch{c}", tokens=3)) for c in range(4)}
    outcomes = {c: await outcome(h) for c, h in handles.items()}
    assert backend.call_sizes == [2, 2]
    failed = {int(t[2:]) for t in backend.calls[0].texts}
    for c, out in outcomes.items():
        if c in failed:
            assert isinstance(out, RuntimeError) and str(out) == "out of memory"
        else:
            assert out == scripted_reply(f"ch{c}", GenerationSettings(max_new_tokens=3))
    assert await result(runner.submit(job(0, "again", tokens=2))) == scripted_reply("again", GenerationSettings(max_new_tokens=2))


async def test_a_dead_worker_is_restarted_once_then_stays_unavailable(rig):
    backend = ScriptedBackend()
    loads: list[int] = []

    def loader() -> ScriptedBackend:
        loads.append(1)
        return backend

    runner, _, worker = await rig.make(backend=backend, loader=loader, batch_size=2, batch_wait_ms=500)
    assert len(loads) == 1
    backend.fail_next(Die("segfault in a native kernel"))
    first = [runner.submit(job(c, f"x{c}", tokens=2)) for c in (1, 2)]
    for handle in first:
        assert isinstance(await outcome(handle), Unavailable)
    assert backend.call_sizes == [2]

    # restarted: the model was loaded again and later jobs are served
    assert await result(runner.submit(job(1, "y1", tokens=2))) == scripted_reply("y1", GenerationSettings(max_new_tokens=2))
    assert len(loads) == 2 and worker.available

    backend.fail_next(Die("again"))
    assert isinstance(await outcome(runner.submit(job(1, "z1", tokens=2))), Unavailable)
    calls_before = len(backend.calls)
    later = [runner.submit(job(c, f"w{c}", tokens=2)) for c in (1, 2, 3)]
    for handle in later:
        assert isinstance(await outcome(handle, 2.0), Unavailable)  # promptly, no hang
    assert len(loads) == 2 and not worker.available
    assert len(backend.calls) == calls_before  # nothing reached the dead model


async def test_a_handler_that_raises_fails_only_its_job(rig):
    async def handler(j, ctx):
        text = await ctx.generate(j.payload["text"], settings_of(j))
        if j.payload.get("explode"):
            raise KeyError("missing campaign")
        return text

    runner, _, _ = await rig.make(handler, batch_size=2)
    bad = runner.submit(job(1, "bad", tokens=2, explode=True))
    next_in_channel = runner.submit(job(1, "next", tokens=2))
    other = runner.submit(job(2, "other", tokens=2))
    assert isinstance(await outcome(bad), KeyError)
    assert await result(next_in_channel) == scripted_reply("next", GenerationSettings(max_new_tokens=2))
    assert await result(other) == scripted_reply("other", GenerationSettings(max_new_tokens=2))


async def test_resolve_answers_early_but_the_channel_waits_for_the_handler(rig):
    summary_gate = asyncio.Event()
    events: list[str] = []

    async def handler(j, ctx):
        events.append(f"start {j.payload['text']}")
        text = await ctx.generate(j.payload["text"], settings_of(j))
        if j.payload.get("summarise"):
            ctx.resolve(text)
            await summary_gate.wait()  # a summary after the turn
        events.append(f"end {j.payload['text']}")
        return text

    runner, _, _ = await rig.make(handler, batch_size=4)
    turn = runner.submit(job(1, "turn", tokens=3, summarise=True))
    next_turn = runner.submit(job(1, "next", tokens=3))
    other = runner.submit(job(2, "other", tokens=3))
    assert await result(turn, 2.0) == scripted_reply("turn", GenerationSettings(max_new_tokens=3))
    assert await result(other) == scripted_reply("other", GenerationSettings(max_new_tokens=3))
    await asyncio.sleep(0.05)
    assert not next_turn.started and next_turn.position() == 1
    assert "start next" not in events and runner.queue_length(1) == 1  # waits behind the summary
    summary_gate.set()
    assert await result(next_turn) == scripted_reply("next", GenerationSettings(max_new_tokens=3))
    assert events.index("end turn") < events.index("start next")


# --- shutdown -----------------------------------------------------------------------------------

async def test_close_lets_running_jobs_finish_and_fails_waiting_ones(rig):
    runner, _, _ = await rig.make(backend=ScriptedBackend(token_delay=0.005), batch_size=1)
    running = runner.submit(job(1, "running", tokens=20))
    waiting = [runner.submit(job(1, "w1")), runner.submit(job(2, "w2"))]
    await until(lambda: running.text, what="the running job to stream")
    await asyncio.wait_for(runner.close(timeout=5.0), 8)
    assert await result(running) == scripted_reply("running", GenerationSettings(max_new_tokens=20))
    for handle in waiting:
        assert isinstance(await outcome(handle, 0.5), Unavailable)
    with pytest.raises(Unavailable):
        runner.submit(job(3, "late"))
    assert runner_tasks() == []


async def test_close_cancels_running_jobs_after_the_timeout(rig):
    runner, backend, _ = await rig.make(backend=ScriptedBackend(token_delay=0.005), batch_size=2)
    long = [runner.submit(job(c, f"long{c}", tokens=2000)) for c in (1, 2)]  # 10 s each
    await until(lambda: all(h.text for h in long), what="both jobs to stream")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(runner.close(timeout=0.2), 6)
    assert loop.time() - began < 2.0
    for handle in long:
        assert isinstance(await outcome(handle, 0.5), Cancelled)
    assert backend.calls[0].stopped == {0, 1}
    assert runner_tasks() == []
    with pytest.raises(Unavailable):
        runner.submit(job(1, "late"))


# --- the real bundled model ---------------------------------------------------------------------

class RecordingBackend(TextBackend):
    """Delegates to a real backend and records the requests of every generate_batch call."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.can_batch = inner, inner.name, inner.can_batch
        self.calls: list[list] = []

    def render(self, prompt):
        return self.inner.render(prompt)

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def generate_batch(self, requests, on_token, should_stop):
        self.calls.append(list(requests))
        return self.inner.generate_batch(requests, on_token, should_stop)


async def test_three_channels_batch_through_the_real_model(rig, text_backend):
    recorder = RecordingBackend(text_backend)
    settings = GenerationSettings(max_new_tokens=5, min_new_tokens=3, do_sample=False)

    async def handler(j, ctx):
        return await ctx.generate(j.payload["prompt"], settings)

    runner, _, _ = await rig.make(handler, backend=recorder, batch_size=4, batch_wait_ms=50, job_timeout_s=60)
    scenes = ["a tavern brawl", "a haunted lighthouse", "a dragon's bargain"]
    prompts = [
        text_backend.render(Prompt("You are the Dungeon Master.", f"Describe {scene} in one sentence.", ""))
        for scene in scenes
    ]
    handles = [
        runner.submit(Job(campaign_id=c, channel_id=100 + c, payload={"prompt": p})) for c, p in enumerate(prompts)
    ]
    streams = await asyncio.wait_for(asyncio.gather(*(collect(h, 60) for h in handles)), 60)
    assert max(len(call) for call in recorder.calls) >= 2, [len(call) for call in recorder.calls]
    assert sorted(r.text for call in recorder.calls for r in call) == sorted(prompts)
    for handle, seen in zip(handles, streams):
        text = await result(handle)
        assert text.strip(), "the model produced no text"
        assert seen[-1] == text == handle.text


async def test_an_idle_runner_owns_no_background_task(rig):
    """Nothing waits forever in the background: harnesses (SimCord's settle) can tell work is done."""
    runner, backend, _ = await rig.make()
    assert runner_tasks() == []
    handles = [runner.submit(job(c, f"c{c}", tokens=3)) for c in (1, 2)]
    assert runner_tasks()  # the jobs (and then the batcher) run as tasks...
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WAIT)
    await until(lambda: not runner_tasks(), what="the runner to go idle")  # ...and end with them


# --- the prompt guard -----------------------------------------------------------------------------
async def test_no_generate_call_passes_the_guard_past_the_models_context(rig):
    from engine.errors import BadInput
    from engine.jobs.guard import PromptGuard

    guard = PromptGuard(lambda text: len(text.split()), context_tokens=20)
    runner, backend, _ = await rig.make(guard=guard)
    assert await result(runner.submit(job(1, "ten words " * 5, tokens=10))) == scripted_reply(
        "ten words " * 5, GenerationSettings(max_new_tokens=10))  # 10 + 10 tokens: fits exactly
    with pytest.raises(BadInput, match="21 tokens, more than the model's 20"):
        await result(runner.submit(job(2, "ten words " * 5, tokens=11)))
    with pytest.raises(BadInput, match="llm.context_tokens"):
        await result(runner.submit(job(3, "word " * 500, tokens=1)))
    assert backend.call_sizes == [1] and guard.largest == 20  # the refused ones never reached the model
