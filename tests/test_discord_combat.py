"""Combat and quests through SimCord, with a scripted DM: a fight of two players and three goblins in initiative
order, one tracker message edited and never re-posted, the combat block in the prompt and gone after the end,
a downed NPC skipped, a player's turn passing when the round's timer runs out, the DM's combat markers undone;
quests in and out of the prompt; every refusal private."""
from __future__ import annotations

import pytest
from discord_world import World, reply_text
from test_discord import REFUSAL, bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)
from test_discord_rounds import rounds_on
from test_discord_sheets import set_fields

from engine.game.combat import fight_from_json

pytestmark = [pytest.mark.simcord(settle_timeout=120), pytest.mark.config(llm={"generation": {"max_new_tokens": 120}})]


def trackers(world: World) -> list:
    return [m for m in world.bot_messages(world.table) if m.content.startswith(("⚔️ **Combat", "⚔️ The fight is over"))]


async def fight_of(world: World, campaign):
    data = await world.store.fight(campaign.id)
    return fight_from_json(data) if data else None


async def party(world: World):
    campaign = await start(world)
    await set_fields(world, world.alice, max_hp="24", hp="24", dex="16")
    await set_fields(world, world.bob, max_hp="30", hp="30", dex="10")
    return campaign


async def test_a_fight_of_two_players_and_three_goblins(world, model):
    campaign = await party(world)
    refused = await world.slash(world.alice, world.table, "dm combat start")
    assert refused.ephemeral and reply_text(refused) == REFUSAL
    nothing = await world.slash(world.gm, world.table, "dm combat next")
    assert nothing.ephemeral and "There is no fight here" in reply_text(nothing)

    started = await world.slash(world.gm, world.table, "dm combat start")
    assert not started.ephemeral and reply_text(started).startswith("⚔️ Roll for initiative! ")
    assert "Aria 1d20 (" in reply_text(started) and "+ 3 = `" in reply_text(started)  # DEX 16: +3
    added = await world.slash(world.gm, world.table, "dm combat add", name="Goblin", count=3, hp=7, mod=2)
    assert "Goblin 1 1d20 (" in reply_text(added) and "Goblin 3 1d20 (" in reply_text(added)
    fight = await fight_of(world, campaign)
    keys = [(c.initiative, c.dex, c.tiebreak) for c in fight.order]
    assert [c.name for c in fight.order if c.npc] != [] and keys == sorted(keys, reverse=True)  # initiative order
    (tracker,) = trackers(world)  # one message, edited as the fight changes, pinned
    assert "Goblin 3 · unhurt" in tracker.content and "Aria · HP 24/24" in tracker.content
    assert tracker.pinned

    for command, options, said in (("dm combat add", {"name": "Orc", "count": 21}, "add 1 to 20 at a time"),
                                   ("dm combat remove", {"name": "Dragon"}, "nobody called Dragon"),
                                   ("dm combat start", {}, "a fight is on already")):
        result = await world.slash(world.gm, world.table, command, **options)
        assert result.ephemeral and said.lower() in reply_text(result).lower(), reply_text(result)

    # the DM narrates with the combat block, and its markers hurt a goblin
    up = fight.player_up()
    await (world.alice if up.name == "Aria" else world.bob).send(world.table, "I strike the nearest goblin.")
    model.script = "A blade flashes and Goblin 1 falls. [[hp Goblin 1 -7]] Goblin 2 snarls. [[hp Goblin 2 -3]]"
    told = await world.slash(world.gm, world.table, "dm continue")
    prompt = model.calls[-1][0]
    assert f"Combat, round 1. Now: {fight.current.name}. Order: " in prompt and "Goblin 1" in prompt
    assert "📜 Goblin 1 takes 7 damage (down); Goblin 1 is down" in reply_text(told)
    after = await fight_of(world, campaign)
    assert after.find("Goblin 1").down and after.find("Goblin 2").hp == 4
    assert not after.current.npc and after.current.name != up.name or len([c for c in after.order if not c.npc]) == 1
    (tracker,) = trackers(world)
    assert "💀" in tracker.content and "Goblin 1 · down" in tracker.content and "Goblin 2 · hurt" in tracker.content

    # a downed NPC is skipped whatever moves the turn
    for _ in range(len(after.order) * 2):
        stepped = await world.slash(world.gm, world.table, "dm combat next")
        assert "Goblin 1's turn" not in reply_text(stepped)

    # undo puts the fight back as it was before the turn
    undone = await world.slash(world.gm, world.table, "dm undo")
    assert "The fight is back as it was." in reply_text(undone)
    assert (await fight_of(world, campaign)).find("Goblin 1").hp == 7

    ended = await world.slash(world.gm, world.table, "dm combat end")
    assert reply_text(ended).startswith("🏁 The fight is over")
    (tracker,) = trackers(world)
    assert tracker.content == "⚔️ The fight is over."
    model.script = "The dust settles."
    await world.alice.send(world.table, "I catch my breath.")
    await world.slash(world.gm, world.table, "dm continue")
    assert "Combat, round" not in model.calls[-1][0]


async def test_a_players_turn_passes_when_the_timer_runs_out_and_the_dm_starts_a_fight_by_marker(world, model):
    campaign = await party(world)
    await world.alice.send(world.table, "I open the crypt door.")
    await world.bob.send(world.table, "I follow Aria.")
    model.script = "Three goblins leap out! [[combat start: 3 goblins hp 5]]"
    told = await world.slash(world.gm, world.table, "dm continue")
    assert "⚔️ Combat! Initiative: " in reply_text(told) and "[[" not in reply_text(told)
    fight = await fight_of(world, campaign)
    assert {c.name for c in fight.order} == {"Aria", "Bram", "Goblin 1", "Goblin 2", "Goblin 3"}
    assert fight.find("Goblin 2").max_hp == 5 and len(trackers(world)) == 1

    await rounds_on(world, timeout=300)
    up = fight.player_up()
    other = world.bob if up.name == "Aria" else world.alice
    await other.send(world.table, "I raise my shield.")  # not their turn: the round still waits for `up`
    turns = await world.store.turn_count(campaign.id)
    model.script = "The goblins circle."
    await world.env.advance_time(301)
    assert await world.store.turn_count(campaign.id) == turns + 1
    narration = [m for m in world.bot_messages(world.table) if "The goblins circle." in m.content][-1]
    assert f"🎲 {up.name}'s turn passes" in narration.content
    assert (await fight_of(world, campaign)).player_up().name != up.name

    # the marker's fight is undone with its turn... after the turn that started it is undone too
    await world.slash(world.gm, world.table, "dm undo")
    await world.slash(world.gm, world.table, "dm undo")
    assert await world.store.fight(campaign.id) is None


async def test_quests_go_into_the_prompt_while_active_and_stay_in_the_record(world, model):
    campaign = await start(world)
    refused = await world.slash(world.alice, world.table, "dm quest add", title="Steal the crown")
    assert refused.ephemeral and reply_text(refused) == REFUSAL
    added = await world.slash(world.gm, world.table, "dm quest add", title="The lost key", giver="Mirelda",
                              reward="20 gold")
    assert reply_text(added) == "📜 Quest #1: The lost key (from Mirelda; reward: 20 gold)"
    await world.slash(world.gm, world.table, "dm quest step", id=1, text="found the cellar door")
    await world.slash(world.gm, world.table, "dm quest add", title="Calm the river spirit")
    for command, options, said in (("dm quest step", {"id": 9, "text": "x"}, "no quest #9"),
                                   ("dm quest done", {"id": 9}, "no quest #9"),
                                   ("dm quest add", {"title": "x" * 101}, "at most 100 characters")):
        result = await world.slash(world.gm, world.table, command, **options)
        assert result.ephemeral and said.lower() in reply_text(result).lower(), reply_text(result)

    model.script = "The cellar is dark."
    await world.alice.send(world.table, "I go down to the cellar.")
    await world.slash(world.alice, world.table, "dm continue")
    assert ("Quests:\n- The lost key (from Mirelda; reward: 20 gold): found the cellar door\n"
            "- Calm the river spirit") in model.calls[-1][0]
    await world.slash(world.gm, world.table, "dm quest done", id=1)
    await world.slash(world.gm, world.table, "dm quest fail", id=2)
    await world.alice.send(world.table, "I climb back up.")
    await world.slash(world.alice, world.table, "dm continue")
    assert "Quests:" not in model.calls[-1][0]
    listed = reply_text(await world.slash(world.bob, world.table, "dm quest list"))
    assert listed.splitlines() == ["✅ #1 The lost key (from Mirelda; reward: 20 gold): found the cellar door",
                                   "❌ #2 Calm the river spirit"]
    assert [q.status for q in await world.store.quests(campaign.id)] == ["done", "failed"]
