"""One turn through the whole engine against a bare model.generate on the same prompt and length.

Both use greedy decoding with exactly N new tokens, so they do the same model work; the ratio is
the engine's overhead (recall, prompt building, worker hand-off, streaming, commit, memory entries).
Usage: python bench/turn.py [--tokens 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from common import MODEL_CACHE, emit, log, median

from bot.config import parse_config
from bot.services import build_services
from engine.jobs import Job

SETTINGS = {"do_sample": False}


async def main(tokens: int, repeats: int) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-turn-")
    config = parse_config({
        "storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE},
        "memory": {"summarize_every": 0},
    }, "bench")
    services = await build_services(config, log.info)
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
        await services.narrator.add_action(campaign.id, 1, "Bram" if i % 2 == 0 else "Ilsa", actions[i % len(actions)])
        start = time.perf_counter()
        handle = services.runner.submit(Job(campaign.id, 1, "turn"))
        await handle.result()
        elapsed = time.perf_counter() - start
        bare = await services.text.call(lambda b: bare_generate(b, prompts[-1], tokens))
        if i > 0:
            engine_times.append(elapsed)
            bare_times.append(bare)
        log.info("turn %d: engine %.2f s, bare generate %.2f s", i, elapsed, bare)
    await services.close()
    engine, bare = median(engine_times), median(bare_times)
    return {"new_tokens": tokens, "repeats": repeats, "engine_turn_s": round(engine, 3),
            "bare_generate_s": round(bare, 3), "ratio": round(engine / bare, 3), "goal_ratio": 1.05}


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
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    emit(asyncio.run(main(args.tokens, args.repeats)))
