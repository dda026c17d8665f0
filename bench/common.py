"""What every benchmark shares: run from the repo root, offline, figures as one JSON line last."""
from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = str(ROOT / ".cache" / "models")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(ROOT))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
log = logging.getLogger("bench")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(figures: dict) -> None:
    """The benchmark's result: one JSON object on the last line of stdout."""
    print(json.dumps(figures, sort_keys=True))
