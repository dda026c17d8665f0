"""/dm roll through SimCord: the real bot, a scripted model, a temp SQLite file. A roll is posted with
every die, enters the story as its roller's action, keeps its numbers through retry and undo; a secret
roll is seen only by its roller and the admins (/dm status); a roll that cannot be made is refused privately with nothing stored."""
from __future__ import annotations

import re

import pytest
from discord_world import reply_text
from test_discord import bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)

from engine.game.dice import ROLLS_RULE



async def test_a_roll_is_posted_with_its_dice_and_reaches_the_next_prompt(world, model):
    model.script = "The guard never turns around."
    campaign = await start(world)
    await world.alice.send(world.table, "I sneak past the guard.")
    result = await world.slash(world.alice, world.table, "dm roll", dice="1d20+5", reason="Stealth")
    text = reply_text(result)
    shown = re.fullmatch(r"🎲 Aria, Stealth: 1d20 \((?:\*\*)?(\d+)(?:\*\*)?\) \+ 5 = `(\d+)`", text)  # a crit in bold
    assert not result.ephemeral and shown, text
    assert text in [m.content for m in world.table.history(viewer=world.bob)]  # the whole table sees it
    die, total = int(shown.group(1)), int(shown.group(2))
    assert 1 <= die <= 20 and total == die + 5
    pending = await world.store.pending_actions(campaign.id)
    assert [a.text for a in pending] == ["I sneak past the guard.", f"[rolled 1d20+5 for Stealth = {total}]"]

    await world.slash(world.alice, world.table, "dm continue")
    prompt = model.calls[-1][0]
    assert f"Aria: [rolled 1d20+5 for Stealth = {total}]" in prompt and ROLLS_RULE in prompt

    # retry narrates the same rolls; undo returns them as they fell, and nothing rolls again
    await world.slash(world.alice, world.table, "dm retry")
    assert f"[rolled 1d20+5 for Stealth = {total}]" in model.calls[-1][0]
    await world.slash(world.gm, world.table, "dm undo")
    returned = [a.text for a in await world.store.pending_actions(campaign.id)]
    assert returned == ["I sneak past the guard.", f"[rolled 1d20+5 for Stealth = {total}]"]


async def test_a_secret_roll_is_seen_by_its_roller_and_the_admins_only_and_still_reaches_the_dm(world, model):
    campaign = await start(world)
    result = await world.slash(world.bob, world.table, "dm roll", dice="4d6kh3", reason="Insight", secret=True)
    assert result.ephemeral and reply_text(result).startswith("🎲 Bram, Insight: 4d6kh3 (")
    assert reply_text(result) not in [m.content for m in world.table.history(viewer=world.alice)]
    (action,) = await world.store.pending_actions(campaign.id)
    assert action.author_name == "Bram" and re.fullmatch(r"\[rolled 4d6kh3 for Insight = \d+\]", action.text)
    # /dm rolls: the admins see the dice, the roller too, anyone else only that a secret roll was made
    total = action.text.rsplit("= ", 1)[1].rstrip("]")
    await world.slash(world.alice, world.table, "dm roll", dice="1d20", reason="Luck")
    seen = {who: reply_text(await world.slash(actor, world.table, "dm status")).split("🎲 Latest rolls:\n")[1]
            for who, actor in (("gm", world.gm), ("mod", world.mod), ("bram", world.bob), ("aria", world.alice))}
    for who in ("gm", "mod", "bram"):
        assert f"  🎲 Bram: 4d6kh3 for Insight = {total} 🤫" in seen[who].splitlines(), seen[who]
    assert "  🤫 Bram rolled in secret" in seen["aria"].splitlines() and "Insight" not in seen["aria"]
    assert seen["aria"].splitlines()[0].startswith("  🎲 Aria: 1d20 for Luck = ")  # newest first, public ones whole


@pytest.mark.parametrize("dice, said", [
    ("1d0", "0-sided"), ("1/0", "divide by zero"), ("101d6", "at most 100 dice"), ("1d1001", "at most 1000 sides"),
    ("1d20+luck", "`luck` is not a number"), ("roll a d20", "is not a number"), ("2d6!!", "not a roll I can read"),
    ("9" * 201, "at most 200 characters"),
])
async def test_a_roll_that_cannot_be_made_is_refused_privately_and_nothing_is_stored(world, model, dice, said):
    campaign = await start(world)
    result = await world.slash(world.alice, world.table, "dm roll", dice=dice)
    assert result.ephemeral and said in reply_text(result), reply_text(result)
    assert await world.store.pending_actions(campaign.id) == []
    assert not any(m.content.startswith("🎲 Aria") for m in world.bot_messages(world.table))
