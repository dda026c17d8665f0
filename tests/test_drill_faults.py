"""The faults drill's fast scenarios (drills/faults.py), one test each: every fault is injected into the
real bot through SimCord and the loopback servers, healed, and the table plays on. Each test asserts
what the drill reads afterwards: no unhandled error, no lost action (from the SQLite file), nothing
unclear shown to the table, and the scenario's own expectations.

The slow scenarios (the database locked past its 5 s busy timeout) run only in the drill itself:
`.venv/bin/python drills/faults.py`.
"""
from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from drills import faults

FAST = [name for name, fault in faults.FAULTS.items() if fault.fast]


@pytest.fixture(scope="module")
def shared(embedder):
    opened = faults.Shared.open(embedder)
    yield opened
    opened.close()


@pytest.mark.parametrize("name", FAST)
async def test_the_table_survives_the_fault(shared, name):
    outcome = await faults.run_fault(faults.FAULTS[name], shared)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.unhandled == []
    assert outcome.lost == []
    assert outcome.unclear == []
    assert outcome.problems == []
    assert outcome.passed


async def _broken_table(play: faults.Play) -> None:
    """Everything the drill must notice, done on purpose: an action deleted behind the bot's back,
    an error escaping a listener, a traceback posted to the table."""
    await play.start()
    await play.act(play.world.alice, "I hide the map under a stone.")
    with sqlite3.connect(play.db_path) as conn:
        conn.execute("DELETE FROM actions")
    logging.getLogger("discord.client").error("Ignoring exception in on_message", exc_info=RuntimeError("boom"))
    play.backend.script = 'Traceback (most recent call last): File "dm.py", line 3, in turn'
    await play.slash(play.world.alice, "dm continue")


async def test_the_drill_counts_what_it_finds(shared, monkeypatch):
    monkeypatch.setitem(faults.FAULTS, "self_check", faults.Fault("self_check", "a table broken on purpose",
                                                                   _broken_table))
    summary = await faults.run_drill(["self_check"], shared, echo=lambda line: None)
    assert json.loads(json.dumps(summary)) == summary  # one JSON line, as the drill prints it
    assert (summary["faults_tried"], summary["passed"], summary["ok"]) == (1, 0, False)
    assert (summary["unhandled_errors"], summary["actions_lost"], summary["unclear_messages"]) == (1, 1, 1)
    (lost,) = summary["by_fault"]["self_check"]["lost"]
    assert "I hide the map" in lost and "never told" in lost
