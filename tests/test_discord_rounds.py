"""Rounds through SimCord: the real bot, the session's real model (tiny generations), a temp SQLite file.
The round timer runs on SimCord's virtual clock (`advance_time`); it is set past the settle timeout,
since SimCord's settling fires any sleep that ends before its own deadline."""
from __future__ import annotations

import asyncio

import pytest
from discord_world import World, reply_text
from test_discord import bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.simcord(settle_timeout=120)


async def rounds_on(world: World, timeout: int) -> None:
    for name, value in (("rounds", "on"), ("round_timeout", str(timeout))):
        result = await world.slash(world.gm, world.table, "dm settings", name=name, value=value)
        assert reply_text(result).startswith(f"✅ {name} set."), reply_text(result)


async def two_player_round(world: World):
    """A campaign whose first turn Aria and Bram acted in (so the round waits for both), rounds on, no timer."""
    campaign = await start(world)
    await world.alice.send(world.table, "I light a torch.")
    await world.bob.send(world.table, "I guard the door.")
    await world.slash(world.gm, world.table, "dm continue")
    await rounds_on(world, timeout=0)
    return campaign


def round_notes(world: World) -> list[str]:
    return [m.content for m in world.bot_messages(world.table) if m.content.startswith("-# 🎲 Round")]


async def test_a_round_is_narrated_once_when_everyone_has_acted(world, model):
    campaign = await two_player_round(world)
    generations = len(model.calls)

    await world.alice.send(world.table, "I read the runes on the wall.")
    assert await world.store.turn_count(campaign.id) == 1
    assert round_notes(world) == ["-# 🎲 Round 2: waiting for Bram."]
    status = reply_text(await world.slash(world.bob, world.table, "dm status"))
    assert "🎲 Round 2: waiting for Bram." in status.splitlines()

    await world.bob.send(world.table, "I search the alcove.")
    turn = await world.store.last_turn(campaign.id)
    assert turn.number == 2 and [a.author_name for a in turn.actions] == ["Aria", "Bram"]
    assert len(model.calls) == generations + 1  # one narration, no second one
    narration = world.bot_messages(world.table)[-1]
    assert narration.content.startswith(turn.posted) and "🎲 everyone has acted · turn 2" in narration.content
    assert narration.interaction_metadata is None  # nobody asked: an ordinary channel message
    assert round_notes(world) == ["-# 🎲 Round 2: the DM narrates."]  # the one note, edited
    assert await world.store.pending_actions(campaign.id) == []


async def test_a_round_the_model_cannot_narrate_is_told_once_and_waits_for_the_next_change(world, model):
    campaign = await two_player_round(world)
    await world.alice.send(world.table, "I read the runes on the wall.")
    model.script = ""  # the model writes nothing, on every draw
    generations = len(model.calls)
    await world.bob.send(world.table, "I search the alcove.")
    failed = [m.content for m in world.bot_messages(world.table) if "wrote nothing" in m.content]
    assert len(failed) == 1 and len(model.calls) == generations + 2  # the draw and its one redraw, not a loop
    assert await world.store.turn_count(campaign.id) == 1 and len(await world.store.pending_actions(campaign.id)) == 2

    model.script = "Dust falls from the alcove as the runes flare."
    await world.alice.send(world.table, "I trace the runes.")  # a change: the round is narrated again
    turn = await world.store.last_turn(campaign.id)
    assert turn.number == 2 and [a.author_name for a in turn.actions] == ["Aria", "Bram", "Aria"]
    assert turn.posted.startswith("Dust falls")


async def test_the_timer_narrates_the_round_and_a_late_player_waits_for_the_next(world, model):
    campaign = await start(world)
    await world.slash(world.bob, world.table, "dm join")  # Bram is waited for before he ever wrote
    await rounds_on(world, timeout=600)
    await world.alice.send(world.table, "I pry open the sarcophagus.")
    (note,) = round_notes(world)
    assert note.startswith("-# 🎲 Round 1: waiting for Bram (the DM narrates <t:") and note.endswith(":R> if they do not act).")
    await world.env.advance_time(300)
    assert await world.store.turn_count(campaign.id) == 0
    await world.env.advance_time(301)
    turn = await world.store.last_turn(campaign.id)
    assert turn is not None and [a.author_name for a in turn.actions] == ["Aria"]
    assert "🎲 the round's time ran out · turn 1" in world.bot_messages(world.table)[-1].content
    assert round_notes(world) == ["-# 🎲 Round 1: the DM narrates."]

    await world.bob.send(world.table, "I was late: I hold the lantern high.")
    assert round_notes(world)[-1].startswith("-# 🎲 Round 2: waiting for Aria")
    assert await world.store.turn_count(campaign.id) == 1


async def test_continue_narrates_a_waiting_round_and_stops_its_timer(world, model):
    campaign = await start(world)
    await world.slash(world.bob, world.table, "dm join")
    await rounds_on(world, timeout=600)
    await world.alice.send(world.table, "I step onto the bridge.")
    result = await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert turn.number == 1 and reply_text(result) == turn.posted
    assert round_notes(world) == ["-# 🎲 Round 1: the DM narrates."]
    generations = len(model.calls)
    await world.env.advance_time(700)
    assert await world.store.turn_count(campaign.id) == 1 and len(model.calls) == generations


async def test_leave_stops_the_wait_and_settings_refuse_bad_round_values(world, model):
    campaign = await start(world)
    joined = await world.slash(world.bob, world.table, "dm join")
    assert joined.ephemeral and "Rounds are off in this campaign" in reply_text(joined)
    await rounds_on(world, timeout=0)
    await world.alice.send(world.table, "I call out into the dark.")
    assert round_notes(world) == ["-# 🎲 Round 1: waiting for Bram."]
    left = await world.slash(world.bob, world.table, "dm leave")
    assert reply_text(left).startswith("👋 You stepped away")
    turn = await world.store.last_turn(campaign.id)  # nobody else to wait for: the round is narrated
    assert turn is not None and [a.author_name for a in turn.actions] == ["Aria"]

    bad = await world.slash(world.gm, world.table, "dm settings", name="round_timeout", value="-5")
    assert reply_text(bad) == "⚠️ Round_timeout must be a whole number from 0 to 604800, not -5."
    off = await world.slash(world.gm, world.table, "dm settings", name="rounds", value="off")
    assert "`rounds` = False *(this campaign)*" in reply_text(off)
    await world.alice.send(world.table, "I wait for an answer.")
    assert await world.store.turn_count(campaign.id) == 1  # rounds off: only /dm continue narrates


async def test_an_action_written_while_the_round_is_narrated_opens_the_next_round(world, model):
    campaign = await two_player_round(world)
    await world.alice.send(world.table, "I read the runes.")
    # The narration takes a while, by the wall clock; scripted, since a turn the tiny model writes
    # only players' lines for is generated again (a third call) on some CPUs.
    model.script = "The runes glow a pale blue as the alcove's dust stirs in a cold draught."
    model.token_delay = 0.2
    generations = len(model.calls)

    async def no_settle(*args, **kwargs):  # SimCord internal (see test_discord.slash_together)
        return None

    world.env._settle_internal = no_settle
    try:
        await world.bob.send(world.table, "I search the alcove.")  # the round is complete: it is narrated
        for _ in range(200):  # until the model is writing, so the turn has taken its actions
            if len(model.calls) > generations:
                break
            await asyncio.sleep(0.05)
        assert len(model.calls) == generations + 1
    finally:
        del world.env._settle_internal
    await world.alice.send(world.table, "I step back from the wall.")  # while the DM narrates
    await world.env.settle()
    turn = await world.store.last_turn(campaign.id)
    assert turn.number == 2 and [a.text for a in turn.actions] == ["I read the runes.", "I search the alcove."]
    assert [a.text for a in await world.store.pending_actions(campaign.id)] == ["I step back from the wall."]
    assert len(model.calls) == generations + 1  # the next round waits for Bram
    assert round_notes(world)[-1] == "-# 🎲 Round 3: waiting for Bram."


async def test_withdrawing_the_rounds_only_action_keeps_its_one_note(world, model):
    """The round's only action taken back: its note says the round has no action yet (nothing is
    narrated), and the next action edits the same note instead of posting a second 'Round 1'."""
    campaign = await start(world)
    await world.slash(world.gm, world.table, "dm join")
    await world.slash(world.alice, world.table, "dm join")
    await rounds_on(world, timeout=0)
    generations = len(model.calls)

    await world.alice.send(world.table, "I light a torch.")
    assert round_notes(world) == ["-# 🎲 Round 1: waiting for Game Master Gil."]
    await world.slash(world.alice, world.table, "dm withdraw")
    notes = round_notes(world)
    assert len(notes) == 1 and "no action yet" in notes[0] and "narrates" not in notes[0], notes
    await world.alice.send(world.table, "I light a lantern instead.")
    notes = round_notes(world)
    assert len(notes) == 1 and notes[0].startswith("-# 🎲 Round 1: waiting for"), notes
    assert len(model.calls) == generations and await world.store.turn_count(campaign.id) == 0
