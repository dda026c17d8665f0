"""One turn through the whole engine against a bare model.generate on the same prompt and length.

Both use greedy decoding with exactly N new tokens, so they do the same model work; the ratio is
the engine's overhead (recall, prompt building, worker hand-off, streaming, commit, memory entries).
Then `--edit-turns` more turns are played as `/dm continue` plays them (cogs/dm.py): a turn job is
submitted and its updates go through the Discord cog's NarrationStream; `first_edit_s` is the median
time from the submit to the stream's first edit (the first text it shows, with the real bundled
model), `first_edit_s_all` each one. `peak_rss_mb` is this process's peak resident memory: the bot's
services with the bundled models loaded and all these turns played.
Usage: python bench/turn.py [--tokens 64] [--repeats 3] [--edit-turns 3]
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time

from common import MODEL_CACHE, bench_logging, emit, log, median

from bot.config import parse_config
from bot.services import build_services
from engine.jobs.job import Job

SETTINGS = {"do_sample": False}


def stream_class():
    """The Discord cog's NarrationStream, or (when the cogs cannot be imported) the same first-edit rule."""
    try:
        from cogs.render import NarrationStream
        return NarrationStream, "cogs.render.NarrationStream"
    except Exception as exc:  # noqa: BLE001 - the ratio is still worth measuring
        log.warning("cannot import cogs.render (%s): timing the first non-blank update instead", exc)

        class FirstText:  # NarrationStream's first edit: the first update that is not blank
            def __init__(self, show) -> None:
                self.show = show

            async def update(self, text: str) -> None:
                if text.strip():
                    await self.show(0, text)

        return FirstText, f"first non-blank update (cogs.render: {type(exc).__name__}: {exc})"


async def first_edit(services, campaign_id: int, stream_type) -> float:
    """Seconds from submitting a turn, as /dm continue does, to the first edit its stream makes."""
    shown: list[float] = []

    async def show(index: int, content: str) -> None:
        if not shown:
            shown.append(time.perf_counter() - start)

    stream = stream_type(show)
    start = time.perf_counter()
    handle = services.runner.submit(Job(campaign_id, 1, "turn", payload={"text": ""}))
    async for text in handle.updates():
        await stream.update(text)
    await handle.result()
    if not shown:
        raise RuntimeError("the stream showed no text")
    return shown[0]


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


async def main(tokens: int, repeats: int, edit_turns: int = 3) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-turn-")
    config = parse_config({
        "storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE},
        "memory": {"summarize_every": 0},
    }, "bench")
    services = await build_services(config, log.info)
    try:
        return await measure(services, tokens, repeats, edit_turns)
    finally:
        await services.close()  # also when a turn fails: the model workers must not keep the process alive


async def measure(services, tokens: int, repeats: int, edit_turns: int) -> dict:
    backend = services.backend
    prompts: list[str] = []
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):  # keep the exact prompt the engine sent
        prompts.append(requests[0].text)
        return original(requests, on_token, should_stop)

    backend.generate_batch = recording
    store = services.store
    campaign = await store.create_campaign(1, "bench", "A heist in the city of Varn, where the guild rules the night.",
                                           settings={**SETTINGS, "max_new_tokens": tokens, "min_new_tokens": tokens})
    engine_times, bare_times = [], []
    actions = ["Bram picks the lock of the guild's back door.", "Ilsa keeps watch from the roof.",
               "Bram asks the guard about the password.", "Ilsa throws a smoke bomb into the hall."]
    for i in range(repeats + 1):  # the first turn warms up
        await services.edits.add_action(campaign.id, 1, "Bram" if i % 2 == 0 else "Ilsa", actions[i % len(actions)])
        start = time.perf_counter()
        handle = services.runner.submit(Job(campaign.id, 1, "turn"))
        await handle.result()
        elapsed = time.perf_counter() - start
        bare = await services.text.call(lambda b: bare_generate(b, prompts[-1], tokens))
        if i > 0:
            engine_times.append(elapsed)
            bare_times.append(bare)
        log.info("turn %d: engine %.2f s, bare generate %.2f s", i, elapsed, bare)
    edits = []
    stream_type, stream_name = stream_class()
    for i in range(edit_turns):
        k = repeats + 1 + i
        await services.edits.add_action(campaign.id, 1, "Bram" if k % 2 == 0 else "Ilsa", actions[k % len(actions)])
        edits.append(await first_edit(services, campaign.id, stream_type))
        log.info("streamed turn %d: first edit after %.2f s", i, edits[-1])
    engine, bare = median(engine_times), median(bare_times)
    figures = {"new_tokens": tokens, "repeats": repeats, "engine_turn_s": round(engine, 3),
               "bare_generate_s": round(bare, 3), "ratio": round(engine / bare, 3), "goal_ratio": 1.05,
               "peak_rss_mb": peak_rss_mb()}
    if edits:
        figures.update(first_edit_s=round(median(edits), 3), first_edit_s_all=[round(e, 3) for e in edits],
                       edit_turns=edit_turns, first_edit_stream=stream_name)
    return figures


def bare_generate(backend, text: str, tokens: int) -> float:
    import torch

    enc = backend.tokenizer([text], return_tensors="pt", add_special_tokens=not backend.is_chat)
    start = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                     repetition_penalty=1.1, pad_token_id=backend.tokenizer.pad_token_id)
    assert out.shape[1] - enc["input_ids"].shape[1] == tokens
    return time.perf_counter() - start


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--edit-turns", type=int, default=3, help="turns streamed as /dm continue streams them")
    args = parser.parse_args()
    emit(asyncio.run(main(args.tokens, args.repeats, args.edit_turns)))
