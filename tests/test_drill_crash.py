"""The crash drill (drills/crash.py), fast: 4 SIGKILLs, one at each kind of moment, then a clean resume.

The drill's children are real processes on a real SQLite file; only the models are scripted. The
tampered runs show the drill's checks catch what they are there for: a lost action, a turn whose
memories are gone.
"""
from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_drill():
    spec = importlib.util.spec_from_file_location("drill_crash", ROOT / "drills" / "crash.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_kills_at_every_moment_lose_nothing(tmp_path):
    drill = load_drill()
    figures = drill.run_drill(kills=4, seed=3, workdir=tmp_path, log=lambda message: None)
    assert figures["by_moment"] == {moment: 1 for moment in drill.MOMENTS}
    assert figures["acknowledged"] > 0
    assert figures["lost"] == 0 and figures["turns_lost"] == 0
    assert figures["integrity_failures"] == 0 and figures["broken_turns"] == 0
    assert figures["resume_failures"] == 0 and figures["child_errors"] == 0
    assert figures["turns"] > 0
    assert figures["ok"] is True


def _delete_first_action(db: str) -> None:
    with sqlite3.connect(db) as conn:  # the first action is always acknowledged before any kill
        conn.execute("DELETE FROM actions WHERE id = (SELECT MIN(id) FROM actions)")
    conn.close()


def _forget_last_turn(db: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM memories WHERE kind = 'exact' AND turn_from = (SELECT MAX(number) FROM turns)")
    conn.close()


@pytest.mark.parametrize("tamper, broken", [(_delete_first_action, "lost"), (_forget_last_turn, "broken_turns")])
def test_the_drill_reports_what_a_crash_broke(tmp_path, tamper, broken):
    drill = load_drill()
    figures = drill.run_drill(kills=1, seed=3, workdir=tmp_path, tamper=tamper, log=lambda message: None)
    assert figures[broken] >= 1
    assert figures["ok"] is False
