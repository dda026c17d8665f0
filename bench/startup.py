"""Process start to model ready: the first run (the bundled GGUF converted once) and cached runs.

Each run is a fresh `python` process that builds every service the bot uses (store, text model,
embedder, runner) and prints READY; the time is measured from spawning it to that line.
Usage: python bench/startup.py [--cached-runs 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from common import ROOT, bench_logging, emit, log, median

CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from bot.config import parse_config
from bot.services import build_services
async def main():
    config = parse_config({{"storage": {{"path": {db!r}}}, "llm": {{"cache_dir": {cache!r}}}}}, "bench")
    services = await build_services(config, lambda m: None)
    print("READY", flush=True)
    await services.close()
asyncio.run(main())
"""


def time_to_ready(cache: str, db: str) -> float:
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), db=db, cache=cache)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "READY":
            elapsed = time.perf_counter() - start
            break
    else:
        raise SystemExit(f"the child process never became ready (exit {child.wait()})")
    child.wait()
    return elapsed


def main(cached_runs: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        first = time_to_ready(f"{folder}/models", f"{folder}/dm.sqlite3")
        log.info("first run (converts the GGUF): %.1f s", first)
        cached = [time_to_ready(f"{folder}/models", f"{folder}/dm.sqlite3") for _ in range(cached_runs)]
        log.info("cached runs: %s", ", ".join(f"{t:.1f} s" for t in cached))
    return {"first_run_s": round(first, 2), "cached_s": round(median(cached), 2), "cached_runs": cached_runs,
            "goal_cached_s": 10}


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--cached-runs", type=int, default=3)
    emit(main(parser.parse_args().cached_runs))
