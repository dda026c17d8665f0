"""The load drill (drills/load.py) in a small variant, and its checks against planted faults.

The small variant keeps the drill's shape (every channel's /dm continue at once, a burst past both
queue limits while the model is held, a drain) with limits small enough that 6 channels overflow.
No timing is asserted: the machine may be slow; what must hold is the story.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("drill_load", ROOT / "drills" / "load.py")
load = importlib.util.module_from_spec(_spec)
sys.modules["drill_load"] = load
_spec.loader.exec_module(load)


async def test_the_small_load_drill_answers_keeps_order_and_refuses_clearly(embedder):
    args = load.parse_args(["--channels", "6", "--max-per-channel", "2", "--max-total", "6",
                            "--tokens", "6", "--token-delay", "0.01", "--settle-timeout", "300"])
    summary = await load.play(args, embedder=embedder)
    assert summary["problems"] == [], summary
    assert summary["continues"] == summary["answered"] + summary["refused"], summary
    assert summary["answered"] >= 6 + 6 + 4  # load + drain + at least one running per slot in the burst
    assert summary["refused_by"]["channel"] >= 1 and summary["refused_by"]["total"] >= 1, summary
    for key in ("refused_unclear", "order_violations", "lost", "crossed", "unnarrated", "unmatched",
                "left_pending", "unanswered", "unacknowledged", "leaks", "errors_logged", "env_errors", "hang"):
        assert summary[key] == 0, (key, summary)
    assert summary["wait_s"]["p50"] is not None and summary["peak_rss_mb"] > 0
    assert summary["ok"] is True


# --- the checks catch what they are for (so a clean drill means something) ---
WRITTEN = ["c001q-a0 I light a torch.", "c001q-a1 I guard the door.", "c001q-a2 I open the chest."]
PROMPT = "c001q: a crypt\nAria: c001q-a0 I light a torch.\nBram: c001q-a1 I guard the door."


def check(actions, turns, pairs, written=WRITTEN):
    report = load.Report()
    load.check_channel(report, 1, written, actions, turns, pairs)
    return report.counts


def test_a_clean_channel_passes():
    actions = [(1, WRITTEN[0], 10), (2, WRITTEN[1], 10), (3, WRITTEN[2], None)]
    assert sum(check(actions, [(10, 1, "c001q-t1-w0")], [(PROMPT, "c001q-t1-w0")]).values()) == 0


@pytest.mark.parametrize("actions, turns, pairs, key", [
    # a lost action: written, never stored
    ([(1, WRITTEN[0], 10), (2, WRITTEN[1], 10)], [(10, 1, "n1")], [(PROMPT, "n1")], "lost"),
    # the newer action consumed, the older left pending
    ([(1, WRITTEN[0], None), (2, WRITTEN[1], 10), (3, WRITTEN[2], None)], [(10, 1, "n1")], [(PROMPT, "n1")],
     "order_violations"),
    # a consumed action the prompt never held
    ([(1, WRITTEN[0], 10), (2, WRITTEN[1], 10), (3, WRITTEN[2], 10)], [(10, 1, "n1")], [(PROMPT, "n1")],
     "unnarrated"),
    # another channel's action in this channel's prompt
    ([(1, WRITTEN[0], 10), (2, WRITTEN[1], 10), (3, WRITTEN[2], None)], [(10, 1, "n1")],
     [(PROMPT + "\nAria: c002q-a0 I sing.", "n1")], "crossed"),
    # a narration no model output holds
    ([(1, WRITTEN[0], 10), (2, WRITTEN[1], 10), (3, WRITTEN[2], None)], [(10, 1, "n1")], [(PROMPT, "other")],
     "unmatched"),
])
def test_each_planted_fault_is_counted(actions, turns, pairs, key):
    assert check(actions, turns, pairs)[key] >= 1


def test_only_a_plain_busy_message_counts_as_a_clear_refusal():
    assert load.is_clear_refusal("⏳ this channel already has 8 jobs waiting; try again in a moment (queue: 8).")
    assert not load.is_clear_refusal("⏳ Waiting for the DM: 3 ahead of this one.")
    assert not load.is_clear_refusal("⏳ Busy: RuntimeError in runner; try again")
    assert not load.is_clear_refusal("Something went wrong on my side; the server owner can find the details.")


def test_continues_answered_out_of_issue_order_are_counted():
    calls = [load.Continue("load", 1, None, issued=t, outcome="answered", turn=n) for t, n in [(0.0, 2), (0.1, 1)]]
    report = load.Report()
    load.check_reply_order(report, calls)
    assert report.counts["order_violations"] == 1
