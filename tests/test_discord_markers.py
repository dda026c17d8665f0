"""The DM's markers through SimCord, with a scripted model (the bundled 135M model seldom writes them): an NPC's
roll made in place with the narration going on after it, a player's roll asked with a button only they may
press and a round that waits for it, state markers applied once on save, shown, taken back by undo and retry,
never applied by a failed or cancelled turn, and never a raw marker in any message sent or edited."""
from __future__ import annotations

import json
import re

import pytest
from discord_world import World, reply_text
from test_discord import bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)
from test_discord_rounds import round_notes, rounds_on
from test_discord_sheets import set_fields

from engine.game.markers import MARKERS_RULE

pytestmark = [pytest.mark.simcord(settle_timeout=120), pytest.mark.config(llm={"generation": {"max_new_tokens": 120}})]
FIGHT = ("The goblin's arrow strikes Aria in the shoulder. [[hp Aria -5]] [[item Aria -arrow x3]] "
         "[[condition Aria +poisoned]] Bram finds a purse. [[gold Bram +10]] [[hp Zed -3]] [[sing loudly]]")


def no_raw_marker(world: World) -> None:
    leaked = [text for text in world.sent_texts() if "[[" in text or "]]" in text]
    assert not leaked, leaked


async def sheets(world: World, campaign) -> dict[int, dict]:
    return {author: json.loads(data) for author, data in (await world.store.sheets(campaign.id)).items()}


async def party(world: World):
    campaign = await start(world)
    await set_fields(world, world.alice, max_hp="24", hp="20", dex="14")
    await world.slash(world.alice, world.table, "dm inventory add", item="arrows", quantity=20)
    await set_fields(world, world.bob, max_hp="12", hp="12")
    return campaign


async def test_an_npc_roll_is_made_in_place_and_the_narration_goes_on_after_it(world, model):
    campaign = await party(world)
    model.replies = ["The goblin lunges at Bram. [[roll 1d20+4 goblin attack]] and this is never read",
                     " Its blade glances off his shield."]
    await world.alice.send(world.table, "I draw my bow.")
    calls = len(model.calls)
    result = await world.slash(world.bob, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    rolled = re.fullmatch(r"The goblin lunges at Bram\. \[rolled 1d20\+4 for goblin attack = (\d+)\] "
                          r"Its blade glances off his shield\.", turn.narration)
    assert rolled and 5 <= int(rolled.group(1)) <= 24, turn.narration
    assert len(model.calls) == calls + 2  # stopped at the marker's end, then went on from the rolled text
    assert model.calls[-1][0].endswith(f"The goblin lunges at Bram. [rolled 1d20+4 for goblin attack = {rolled.group(1)}]")
    assert MARKERS_RULE in model.calls[-2][0]  # the party has sheets: the DM is told how to write markers
    assert reply_text(result).startswith(turn.narration)
    no_raw_marker(world)


async def test_state_markers_are_applied_once_on_save_shown_and_taken_back_by_retry_and_undo(world, model):
    campaign = await party(world)
    before = await sheets(world, campaign)
    await world.alice.send(world.table, "I shoot at the goblin.")
    model.script = FIGHT
    result = await world.slash(world.alice, world.table, "dm continue")
    lines = reply_text(result).split("\n\n", 1)[1].splitlines()
    assert lines == ["📜 Aria takes 5 damage (HP 15/24)", "📜 Aria loses 3 arrows", "📜 Aria is poisoned",
                     "📜 Bram gains 10 gold (10 gold)", "📜 Nothing changed: nobody here is called Zed"], lines
    after = await sheets(world, campaign)
    aria, bram = after[world.alice.id], after[world.bob.id]
    assert (aria["hp"], aria["inventory"], aria["conditions"], bram["gold"]) == (15, {"arrows": 17}, ["poisoned"], 10)
    turn = await world.store.last_turn(campaign.id)
    assert "[[" not in turn.narration and turn.narration.endswith("Bram finds a purse.")

    # retold with the same markers: applied once, not twice
    await world.slash(world.alice, world.table, "dm retry")
    assert await sheets(world, campaign) == after
    # retold without them: what the first narration did is gone
    model.script = "The goblin misses."
    await world.slash(world.alice, world.table, "dm retry")
    assert await sheets(world, campaign) == before
    # again with them, then a player heals by hand, then undo: the turn's changes go, the healing stays
    model.script = FIGHT
    await world.slash(world.alice, world.table, "dm retry")
    await world.slash(world.alice, world.table, "dm hp", change="+2")
    undone = await world.slash(world.gm, world.table, "dm undo")
    assert "What it did to the characters was taken back." in reply_text(undone)
    now = await sheets(world, campaign)
    assert now[world.alice.id]["hp"] == 22 and now[world.alice.id]["inventory"] == {"arrows": 20}
    assert now[world.alice.id]["conditions"] == [] and now[world.bob.id]["gold"] == 0
    no_raw_marker(world)


async def test_a_failed_or_cancelled_turn_changes_nothing(world, model):
    campaign = await party(world)
    before = await sheets(world, campaign)
    await world.alice.send(world.table, "I shoot at the goblin.")
    model.script = "[[hp Aria -5]] [[gold Bram +10]]"  # markers and no story: the turn fails
    failed = await world.slash(world.alice, world.table, "dm continue")
    assert "wrote nothing" in reply_text(failed)
    assert await sheets(world, campaign) == before and await world.store.turn_count(campaign.id) == 0

    model.script, model.token_delay = FIGHT, 0.05
    cancelled = []
    world.requests.hooks.append(lambda e: cancelled.append(world.services.runner.cancel_channel(world.table.id))
                                if e.method == "PATCH" and "goblin" in json.dumps(getattr(e, "json", None)) and not cancelled
                                else None)
    await world.slash(world.alice, world.table, "dm continue")
    assert cancelled and await world.store.turn_count(campaign.id) == 0
    assert await sheets(world, campaign) == before
    no_raw_marker(world)


async def test_a_players_roll_gets_a_button_only_they_may_press_and_the_round_waits_for_it(world, model):
    campaign = await party(world)
    await world.alice.send(world.table, "I creep towards the camp.")
    await world.bob.send(world.table, "I keep watch.")
    model.script = "The goblins' fire crackles. Roll to stay unseen. [[roll 1d20+3 stealth for Aria]] never read"
    await world.slash(world.gm, world.table, "dm continue")
    asked = world.bot_messages(world.table)[-1]
    assert asked.content == "🎲 Aria, roll 1d20+3 for Stealth"
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration.endswith("Roll to stay unseen.") and "never read" not in turn.narration
    await rounds_on(world, timeout=0)

    await world.bob.send(world.table, "I string my bow.")
    assert round_notes(world)[-1] == "-# 🎲 Round 2: waiting for Aria's roll."
    refused = await world.click(world.bob, asked, "Roll for Aria")
    assert refused.ephemeral and "This roll is Aria's to make." in reply_text(refused)
    assert await world.store.turn_count(campaign.id) == 1

    model.script = "The sentry never looks up."
    rolled = await world.click(world.alice, asked, "Roll for Aria")
    shown = re.fullmatch(r"🎲 Aria, Stealth: 1d20 \((?:\*\*)?(\d+)(?:\*\*)?\) \+ 3 = `(\d+)`", reply_text(rolled))
    assert shown and not rolled.ephemeral, reply_text(rolled)
    turn = await world.store.last_turn(campaign.id)  # the round had waited for the roll: now it is narrated
    assert turn.number == 2 and f"[rolled 1d20+3 for stealth = {shown.group(2)}]" in [a.text for a in turn.actions]
    again = await world.click(world.alice, asked, "Roll for Aria")
    assert again.ephemeral and "earlier moment" in reply_text(again)
    no_raw_marker(world)
