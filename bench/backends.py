"""One table on the default backend beside plain transformers, and several channels on llama.cpp.

The bundled model; the same prompt (the bot's chat template, ~120 tokens); exactly `--tokens` new tokens
greedy (min_new_tokens = max_new_tokens), through generate_batch as the runner calls it. Figures:
- transformers, default: load time, tokens/s of one table (over the whole call, prompt read included,
  median of `--runs` after a warm-up) and the time to the first token; `default` is what llm.backend =
  "auto" picks on this machine (bot/services.py choose_backend), with its reason;
- speedup: default over transformers (goal >= 5 on a CPU);
- llama.cpp channels: 1, 4 and 8 different prompts decoded together (the runner's batch of that many
  channels), aggregate tokens/s, and the gain of 4 over 1 (goal >= 1.5).
Each llama.cpp run reads its prompts anew (the slots' memory cleared), as transformers does. The machine
may be shared: the load average goes into the figures. Needs `make setup-llamacpp`.
Usage: python bench/backends.py [--runs 3] [--tokens 128] [--threads 0] [--torch-threads 0] [--channels 1,4,8]
"""
from __future__ import annotations

import argparse
import gc
import os
import time

from common import MODEL_CACHE, bench_logging, emit, log, median

from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt

GOAL_SPEEDUP, GOAL_FOUR_CHANNELS = 5.0, 1.5
PROMPT = Prompt(
    "You are the Dungeon Master of a fantasy campaign. Narrate what happens next in vivid second-person "
    "prose, two short paragraphs, and end by asking the players what they do.",
    "Story so far: the party reached the village of Oxbow at dusk; the miller begged them to look into the "
    "lights seen at night in the old mill.\nBram: I walk up to the mill door and knock three times.\n"
    "Ilsa: I circle round the back, looking for footprints in the mud.",
    "")


def channel_prompt(n: int) -> Prompt:
    """Channel n's prompt: the same length, different words (no shared prefix past the system line)."""
    return Prompt(PROMPT.system, f"Channel {n}. " + PROMPT.user, "")


def forget(backend) -> None:
    """llama.cpp would reuse a slot's memory of the same prompt: read it anew, as transformers does."""
    if hasattr(backend, "context"):
        backend.context.kv_cache_clear()
        backend._cached = [[] for _ in range(backend.slots)]


def timed_runs(backend, runs: int, tokens: int, channels: int = 1) -> dict:
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                  repetition_penalty=1.0)
    requests = [GenRequest(backend.render(channel_prompt(n) if channels > 1 else PROMPT), settings)
                for n in range(channels)]
    rates, firsts = [], []
    for run in range(runs + 1):  # the first run warms up
        forget(backend)
        first: list[float] = []
        start = time.perf_counter()
        outputs = backend.generate_batch(
            requests, lambda row, piece: first or first.append(time.perf_counter()), lambda row: False)
        elapsed = time.perf_counter() - start
        written = sum(backend.count_tokens(o) for o in outputs)  # about tokens x channels (re-tokenized)
        if run:
            rates.append(tokens * channels / elapsed)
            firsts.append(first[0] - start)
        log.info("%s, %d channel(s), run %d: %.1f tokens/s (%d written), first token after %.2f s",
                 backend.name, channels, run, tokens * channels / elapsed, written, first[0] - start)
    return {"tokens_per_s": round(median(rates), 1), "tokens_per_s_runs": [round(r, 1) for r in rates],
            "first_token_s": round(median(firsts), 3), "prompt_tokens": backend.count_tokens(requests[0].text)}


def main(runs: int, tokens: int, threads: int, torch_threads: int, channels: list[int]) -> dict:
    from bot.config import parse_config
    from bot.services import choose_backend
    from engine.textgen.llamacpp_backend import LlamaCppBackend
    from engine.textgen.transformers_backend import TransformersBackend

    figures: dict = {"runs": runs, "new_tokens": tokens, "cpus": len(os.sched_getaffinity(0)),
                     "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    default, why = choose_backend(parse_config({}))
    figures["default"] = {"backend": default, "why": why}
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=MODEL_CACHE)  # converts once if needed
    gc.collect()
    start = time.perf_counter()
    hf = TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=MODEL_CACHE)
    figures["transformers"] = {"load_s": round(time.perf_counter() - start, 2), "torch_threads": torch.get_num_threads(),
                               **timed_runs(hf, runs, tokens)}
    del hf
    gc.collect()
    start = time.perf_counter()
    llama = LlamaCppBackend.load("bundled:smollm2", n_threads=threads, context_tokens=2048, slots=max(channels))
    figures["llama.cpp"] = {"load_s": round(time.perf_counter() - start, 2), "n_threads": llama.n_threads,
                            **timed_runs(llama, runs, tokens)}
    figures["speedup"] = round(figures[default]["tokens_per_s"] / figures["transformers"]["tokens_per_s"], 2)
    figures["goal_speedup"] = GOAL_SPEEDUP
    figures["llama.cpp_channels"] = {str(n): timed_runs(llama, runs, tokens, n)["tokens_per_s"] for n in channels}
    if 1 in channels and 4 in channels:
        per_channels = figures["llama.cpp_channels"]
        figures["four_channels_gain"] = round(per_channels["4"] / per_channels["1"], 2)
        figures["goal_four_channels_gain"] = GOAL_FOUR_CHANNELS
    figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return figures


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: every CPU, as the bot)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads (0: torch's default, as the bot)")
    parser.add_argument("--channels", default="1,4,8", help="llama.cpp channels decoded together, comma-separated")
    args = parser.parse_args()
    emit(main(args.runs, args.tokens, args.threads, args.torch_threads,
              [int(n) for n in args.channels.split(",")]))
