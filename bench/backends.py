"""The bundled model through the transformers backend vs the llama.cpp backend: load time and tokens/s.

Both backends get the same prompt (the bot's chat template, ~120 tokens) and write exactly 128 new
tokens greedy (min_new_tokens = max_new_tokens), through generate_batch as the runner calls it;
tokens/s is 128 over the whole call (prompt included), median of 3 runs after one warm-up. The
transformers load is the cached one (the GGUF converted into .cache/models beforehand, as after the
bot's first start); llama.cpp reads the GGUF itself. The machine may be shared: the load average
goes into the figures. Needs `make setup-llamacpp`.
Usage: python bench/backends.py [--runs 3] [--tokens 128] [--threads 0] [--torch-threads 0]
"""
from __future__ import annotations

import argparse
import gc
import os
import time

from common import MODEL_CACHE, bench_logging, emit, log, median

from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt

PROMPT = Prompt(
    "You are the Dungeon Master of a fantasy campaign. Narrate what happens next in vivid second-person "
    "prose, two short paragraphs, and end by asking the players what they do.",
    "Story so far: the party reached the village of Oxbow at dusk; the miller begged them to look into the "
    "lights seen at night in the old mill.\nBram: I walk up to the mill door and knock three times.\n"
    "Ilsa: I circle round the back, looking for footprints in the mud.",
    "")


def timed_runs(backend, runs: int, tokens: int) -> dict:
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                  repetition_penalty=1.0)
    request = GenRequest(backend.render(PROMPT), settings)
    rates, firsts = [], []
    for run in range(runs + 1):  # the first run warms up
        if hasattr(backend, "model") and hasattr(backend.model, "reset"):
            backend.model.reset()  # llama.cpp would reuse the same prompt's cache: read it anew, as transformers does
        first: list[float] = []
        start = time.perf_counter()
        backend.generate_batch([request], lambda row, piece: first or first.append(time.perf_counter()), lambda row: False)
        elapsed = time.perf_counter() - start
        if run:
            rates.append(tokens / elapsed)
            firsts.append(first[0] - start)
        log.info("%s run %d: %.1f tokens/s, first token after %.2f s", backend.name, run, tokens / elapsed, first[0] - start)
    return {"tokens_per_s": round(median(rates), 1), "tokens_per_s_runs": [round(r, 1) for r in rates],
            "first_token_s": round(median(firsts), 3), "prompt_tokens": backend.count_tokens(request.text)}


def main(runs: int, tokens: int, threads: int, torch_threads: int = 0) -> dict:
    from engine.textgen.llamacpp_backend import LlamaCppBackend
    from engine.textgen.transformers_backend import TransformersBackend

    figures: dict = {"runs": runs, "new_tokens": tokens, "cpus": os.cpu_count(),
                     "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
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
    llama = LlamaCppBackend.load("bundled:smollm2", n_threads=threads, context_tokens=2048)
    figures["llama.cpp"] = {"load_s": round(time.perf_counter() - start, 2), "n_threads": llama.model.n_threads,
                            **timed_runs(llama, runs, tokens)}
    figures["speedup"] = round(figures["llama.cpp"]["tokens_per_s"] / figures["transformers"]["tokens_per_s"], 2)
    figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return figures


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: half the logical CPUs)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads (0: torch's default, as the bot)")
    args = parser.parse_args()
    emit(main(args.runs, args.tokens, args.threads, args.torch_threads))
