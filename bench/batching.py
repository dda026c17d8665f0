"""Benchmark: does batching turns of several campaigns into one generate call pay on this machine?

Builds the real bundled text model (SmolLM2-135M) in a ModelWorker and a Runner (batch_size 8) whose
handler generates 64 new tokens (greedy, min_new_tokens=64, so every row makes exactly 64) for a
~150-token chat prompt that differs per campaign. It then lets 1, 4 and 8 campaigns submit a turn at
the same moment and measures aggregate new tokens per second, the speed-up over one campaign alone,
and the time to first token (submit -> first update with text) p50/p95.

Run from the repository root:  .venv/bin/python bench/batching.py [--repeats N] [--campaigns 1,4,8]
Progress goes to stderr; the figures are ONE JSON object on the last line of stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

from common import MODEL_CACHE, bench_logging, emit, percentile

from engine.generation import GenerationSettings
from engine.jobs.job import Job
from engine.jobs.runner import JobContext, Runner
from engine.textgen.base import Prompt
from engine.jobs.worker import ModelWorker

log = logging.getLogger("bench.batching")
NEW_TOKENS = 64
SETTINGS = GenerationSettings(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
SYSTEM = (
    "You are the Dungeon Master of a fantasy role-playing game played in a Discord channel. "
    "Narrate what happens next in the second person, in vivid but brief prose. Never act for the "
    "players, never speak for them, and end with a situation that invites their next move."
)
SCENES = [
    ("a rain-soaked harbour town", "Mira the rogue", "picks the lock of the smuggler's warehouse"),
    ("a haunted lighthouse on a cliff", "Brother Aldric", "climbs the spiral stairs with a lantern"),
    ("the court of the goblin king", "Sir Tobin", "offers the king a jewelled dagger as tribute"),
    ("a frozen mountain pass", "Kesh the ranger", "follows giant footprints into a blizzard"),
    ("an elven library under the sea", "Ilsa the wizard", "opens a book that whispers her name"),
    ("a desert caravan at dusk", "Old Hamid", "bargains with a djinn for a flask of water"),
    ("a plague-struck capital", "Doctor Vey", "sneaks into the sealed quarter after curfew"),
    ("a sky-ship above the clouds", "Captain Roe", "orders the crew to ram a pirate vessel"),
]


def user_text(k: int) -> str:
    place, hero, action = SCENES[k % len(SCENES)]
    return (
        f"Campaign {k + 1}. The party is in {place}. Last time they learned that the mayor owes a debt "
        f"to a secret guild and that a stranger in a grey cloak follows them. Now {hero} {action}, "
        f"while the others keep watch. Describe what {hero} finds and what danger is coming."
    )


async def handler(job: Job, ctx: JobContext) -> str:
    return await ctx.generate(job.payload["prompt"], SETTINGS)


async def one_round(runner: Runner, prompts: list[str], round_id: int) -> dict:
    """All campaigns submit a turn at the same moment; returns wall time and per-job TTFT."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    handles = [
        runner.submit(Job(campaign_id=k + 1, channel_id=1000 + k, payload={"prompt": p}, request_id=f"r{round_id}c{k}"))
        for k, p in enumerate(prompts)
    ]

    async def first_token(handle) -> float:
        async for text in handle.updates():
            if text:
                return loop.time() - began
        raise RuntimeError(f"job {handle.job.request_id} produced no text")

    ttfts = await asyncio.wait_for(asyncio.gather(*(first_token(h) for h in handles)), 600)
    texts = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 600)
    wall = loop.time() - began
    return {"wall_s": wall, "ttft_s": list(ttfts), "texts": texts}


async def main(repeats: int, campaign_counts: list[int]) -> dict:
    from engine.textgen.transformers_backend import TransformersBackend
    import torch

    calls: list[int] = []

    def load():
        backend = TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=MODEL_CACHE, progress=log.info)
        inner = backend.generate_batch

        def counted(requests, on_token, should_stop):  # how many requests each generate call carried
            calls.append(len(requests))
            return inner(requests, on_token, should_stop)

        backend.generate_batch = counted  # type: ignore[method-assign]
        return backend

    worker: ModelWorker = ModelWorker("text", load)
    t0 = time.perf_counter()
    backend = await worker.start()
    log.info("model ready in %.1f s (torch threads: %d)", time.perf_counter() - t0, torch.get_num_threads())
    runner = Runner(handler, worker, batch_size=8, batch_wait_ms=20, max_pending_total=64, job_timeout_s=600)
    all_prompts = [backend.render(Prompt(SYSTEM, user_text(k), "")) for k in range(max(campaign_counts))]
    prompt_tokens = [backend.count_tokens(p) for p in all_prompts]
    log.info("prompt tokens per campaign: %s", prompt_tokens)
    try:
        log.info("warm-up round (1 campaign, not measured)")
        await one_round(runner, all_prompts[:1], -1)
        results: dict[str, dict] = {}
        for n in campaign_counts:
            walls, ttfts, call_sizes = [], [], []
            for r in range(repeats):
                calls.clear()
                out = await one_round(runner, all_prompts[:n], r)
                walls.append(out["wall_s"])
                ttfts.extend(out["ttft_s"])
                call_sizes.append(list(calls))
                log.info(
                    "%d campaign(s), round %d: %.2f s, %.1f new tokens/s, generate calls %s",
                    n, r + 1, out["wall_s"], n * NEW_TOKENS / out["wall_s"], calls,
                )
            wall = statistics.median(walls)
            results[str(n)] = {
                "campaigns": n,
                "new_tokens_per_round": n * NEW_TOKENS,
                "wall_s_median": round(wall, 3),
                "wall_s_all": [round(w, 3) for w in walls],
                "tokens_per_s": round(n * NEW_TOKENS / wall, 2),
                "ttft_p50_s": round(percentile(ttfts, 50), 3),
                "ttft_p95_s": round(percentile(ttfts, 95), 3),
                "generate_call_sizes": call_sizes,
            }
        base = results[str(campaign_counts[0])]["tokens_per_s"] if campaign_counts[0] == 1 else None
        for row in results.values():
            row["speedup_vs_1"] = round(row["tokens_per_s"] / base, 2) if base else None
    finally:
        await runner.close(10)
        await worker.stop()
    return {
        "benchmark": "runner batching",
        "model": getattr(backend, "name", "?"),
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": 8,
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "prompt_tokens": prompt_tokens,
        "repeats": repeats,
        "results": results,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="measured rounds per campaign count (median wall time)")
    parser.add_argument("--campaigns", default="1,4,8", help="comma-separated campaign counts; start with 1")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    bench_logging()
    counts = [int(c) for c in args.campaigns.split(",") if c.strip()]
    figures = asyncio.run(main(args.repeats, counts))
    emit(figures, sort_keys=False)
