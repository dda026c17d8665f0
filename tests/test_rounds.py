"""Rounds in the engine: who a round waits for, and the keeper's decisions, over a real SQLite store.
The narration itself is a stand-in here (an event the test releases), so a test can act while the
DM is "narrating"; the Discord side with the real model is in test_discord_rounds.py."""
from __future__ import annotations

import asyncio

import pytest

from engine.table.rounds import RoundKeeper, RoundRules, RoundState, duration, round_state

pytestmark = pytest.mark.asyncio
ARIA, BRAM, CELE = 1, 2, 3


async def play_turn(store, campaign, *actors):
    """A turn in which each (id, name) acted once."""
    for author, name in actors:
        await store.add_action(campaign.id, author, name, f"{name} acts.")
    pending = await store.pending_actions(campaign.id)
    await store.commit_turn(campaign.id, [a.id for a in pending], "The DM narrates.", [])


class Table:
    """A keeper over the store, recording what it narrates and shows; a narration waits for `release`."""

    def __init__(self, store, rules: RoundRules) -> None:
        self.store, self.rules = store, rules
        self.narrated: list[tuple[int, str, list[str]]] = []
        self.shown: list[RoundState | None] = []
        self.release = asyncio.Event()
        self.fail = False  # the narration fails (the model wrote nothing): no turn, the actions stay pending
        self.keeper = RoundKeeper(store, lambda c: self.rules, self.narrate, self.show)

    async def narrate(self, campaign, why):
        pending = await self.store.pending_actions(campaign.id)
        self.narrated.append((campaign.id, why, [a.author_name for a in pending]))
        await self.release.wait()
        if self.fail:
            return False
        pending = await self.store.pending_actions(campaign.id)  # what a turn job would take when it starts
        await self.store.commit_turn(campaign.id, [a.id for a in pending[:len(self.narrated[-1][2])]], "Told.", [])
        return True

    async def show(self, campaign, state):
        self.shown.append(state)

    async def act(self, campaign, author, name):
        await self.store.add_action(campaign.id, author, name, f"{name} acts again.")
        await self.keeper.check(campaign.id)
        await settle()


async def settle():
    for _ in range(20):  # let the keeper's tasks run (they only touch the store and the stand-ins)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


@pytest.fixture
async def campaign(store):
    return await store.create_campaign(7, "Rounds")


async def test_the_round_waits_for_recent_and_joined_players_not_for_those_away(store, campaign):
    await play_turn(store, campaign, (ARIA, "Aria"), (BRAM, "Bram"))
    await store.set_player(campaign.id, CELE, "Cele", joined=True)
    state = await round_state(store, campaign, window=3)
    assert state == RoundState(2, (), ("Aria", "Bram", "Cele")) and not state.complete
    await store.add_action(campaign.id, BRAM, "Bram", "I wait.")
    await store.add_action(campaign.id, BRAM, "Bram", "I wait more.")
    state = await round_state(store, campaign, window=3)
    assert state.acted == ("Bram",) and state.waiting == ("Aria", "Cele")
    await store.set_player(campaign.id, ARIA, "Aria", joined=False)  # /dm leave
    assert (await round_state(store, campaign, window=3)).waiting == ("Cele",)
    for _ in range(3):  # Cele joined: she stays active however long she is quiet
        await play_turn(store, campaign, (BRAM, "Bram"))
    state = await round_state(store, campaign, window=3)
    assert state.number == 5 and state.waiting == ("Bram", "Cele")


async def test_the_line_says_who_and_for_how_long():
    waiting = RoundState(4, ("Aria",), ("Bram", "Cele"), deadline=100.0)
    assert waiting.line(10.0) == "Round 4: waiting for Bram and Cele (the DM narrates in 1 min 30 s if they do not act)."
    assert RoundState(4, ("Aria",), ("Bram",)).line(0) == "Round 4: waiting for Bram."
    assert RoundState(4, (), ("Bram",)).line(0).startswith("Round 4: no action yet")
    assert duration(59.6) == "1 min" and duration(-3) == "0 s" and duration(125) == "2 min 5 s"


async def test_everyone_acted_narrates_once_and_an_action_meanwhile_opens_the_next_round(store, campaign):
    await play_turn(store, campaign, (ARIA, "Aria"), (BRAM, "Bram"))
    table = Table(store, RoundRules(True, 0, 3))
    await table.act(campaign, ARIA, "Aria")
    assert table.narrated == [] and table.shown[-1].waiting == ("Bram",)
    await table.act(campaign, BRAM, "Bram")
    assert table.narrated == [(campaign.id, "everyone has acted", ["Aria", "Bram"])]
    assert table.shown[-1] is None  # the note closed as the narration began
    await table.act(campaign, ARIA, "Aria")  # while the DM narrates: the next round's
    await table.keeper.check(campaign.id)
    assert len(table.narrated) == 1
    table.release.set()
    await settle()
    assert [a.author_name for a in await store.pending_actions(campaign.id)] == ["Aria"]
    assert len(table.narrated) == 1 and table.shown[-1].number == 3 and table.shown[-1].waiting == ("Bram",)
    await table.keeper.close()


async def test_the_timer_narrates_what_came_and_a_continue_stops_it(store, campaign):
    await play_turn(store, campaign, (ARIA, "Aria"), (BRAM, "Bram"))
    table = Table(store, RoundRules(True, 1, 3))
    table.release.set()
    await table.act(campaign, ARIA, "Aria")
    deadline = table.keeper.deadline(campaign.id)
    assert deadline is not None and table.shown[-1].deadline == deadline and table.narrated == []
    await table.act(campaign, ARIA, "Aria")  # a second action does not restart the timer
    assert table.keeper.deadline(campaign.id) == deadline
    await asyncio.sleep(1.2)
    await settle()
    assert table.narrated == [(campaign.id, "the round's time ran out", ["Aria", "Aria"])]
    assert table.keeper.deadline(campaign.id) is None

    await table.act(campaign, BRAM, "Bram")  # a new round, a new timer
    assert table.keeper.deadline(campaign.id) is not None
    async with table.keeper.narrating(campaign.id):  # /dm continue narrates the waiting round
        pending = await store.pending_actions(campaign.id)
        await store.commit_turn(campaign.id, [a.id for a in pending], "Told on request.", [])
    assert table.keeper.deadline(campaign.id) is None
    await asyncio.sleep(1.2)
    await settle()
    assert len(table.narrated) == 1  # the stopped timer narrated nothing
    await table.keeper.close()


async def test_a_failed_narration_waits_for_the_next_change_instead_of_looping(store, campaign):
    await play_turn(store, campaign, (ARIA, "Aria"), (BRAM, "Bram"))
    table = Table(store, RoundRules(True, 0, 3))
    table.release.set()
    table.fail = True
    await table.act(campaign, ARIA, "Aria")
    await table.act(campaign, BRAM, "Bram")  # complete: narrated, and it fails
    await settle()
    assert len(table.narrated) == 1  # not again and again while nothing changes
    assert len(await store.pending_actions(campaign.id)) == 2

    table.fail = False
    await table.act(campaign, ARIA, "Aria")  # a change: the complete round is narrated again
    assert len(table.narrated) == 2 and await store.pending_actions(campaign.id) == []
    await table.keeper.close()


async def test_rounds_off_or_an_ended_campaign_narrate_nothing(store, campaign):
    await play_turn(store, campaign, (ARIA, "Aria"))
    table = Table(store, RoundRules(False, 0, 3))
    await table.act(campaign, ARIA, "Aria")
    assert table.narrated == [] and table.shown == []
    table.rules = RoundRules(True, 0, 3)
    await store.end_campaign(campaign.id)
    await table.act(campaign, ARIA, "Aria")
    assert table.narrated == []
    await table.keeper.close()
