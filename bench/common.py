"""What the benchmarks (bench/) and the drills (drills/) share: the repository's paths, offline models,
one JSON line last, percentiles.

A benchmark runs as `python bench/x.py` and imports this as `common` (its own folder is on sys.path);
a drill runs as `python drills/x.py` or is imported by its test, puts the repository root on sys.path
first and imports `bench.common`. Importing it sets only what both want: the repository root on
sys.path and the environment below. Logging is each script's own: a benchmark calls
`bench_logging()` (progress on stderr); the drills set up theirs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
MODEL_CACHE = str(ROOT / ".cache" / "models")  # where the bundled models are converted once
# The drills use the tests' converted models, like tests/conftest.py (DM_TEST_MODEL_CACHE overrides).
TEST_MODEL_CACHE = os.environ.get("DM_TEST_MODEL_CACHE", MODEL_CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a hub download, even by accident
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm: it reads this once
log = logging.getLogger("bench")


def use_paths(*, tests: bool = False) -> None:
    """The repository root (engine, bot, cogs...) and, with `tests`, tests/ (its helpers are imported
    by module name: yandexfreetranslate installs a top-level `tests` package) first on sys.path."""
    wanted = [str(ROOT)] + ([str(TESTS)] if tests else [])
    sys.path[:0] = [path for path in wanted if path not in sys.path]


use_paths()


def bench_logging() -> None:
    """A benchmark's progress (and the engine's INFO lines) on stderr; stdout keeps the JSON line."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the smallest value with at least q % of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(figures: dict, *, sort_keys: bool = True, ensure_ascii: bool = True) -> None:
    """The result: one JSON object on the last line of stdout, flushed (a parent may be reading the pipe)."""
    print(json.dumps(figures, sort_keys=sort_keys, ensure_ascii=ensure_ascii), flush=True)
