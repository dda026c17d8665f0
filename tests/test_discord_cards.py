"""Story cards through SimCord: admins add and remove them, anyone lists them, and a card enters the
turn's prompt only when one of its keys is mentioned (the real bot, the session's real model)."""
from __future__ import annotations

import pytest
from discord_world import reply_text
from test_discord import (REFUSAL, bot_config, make_bot, model, simcord_bot, start, world)  # noqa: F401 (fixtures)

pytestmark = pytest.mark.simcord(settle_timeout=120)
LORE = "Mirelda runs the Drowned Rat inn and owes the thieves' guild 200 gold."


async def test_admins_add_and_remove_cards_and_anyone_lists_them(world):
    campaign = await start(world)
    refused = await world.slash(world.alice, world.table, "dm card add", keys="Mirelda", text=LORE)
    assert refused.ephemeral and reply_text(refused) == REFUSAL and await world.store.cards(campaign.id) == []
    added = await world.slash(world.gm, world.table, "dm card add", keys="Mirelda, innkeeper , mirelda", text=LORE)
    (card,) = await world.store.cards(campaign.id)
    assert card.keys == ("Mirelda", "innkeeper") and card.text == LORE
    assert added.ephemeral and f"`#{card.id}` **Mirelda, innkeeper**" in reply_text(added)
    listed = await world.slash(world.alice, world.table, "dm card list")
    assert listed.ephemeral and reply_text(listed).startswith("**Story cards** (1)") and "Drowned Rat" in reply_text(listed)

    empty = await world.slash(world.gm, world.table, "dm card add", keys=" , ", text=LORE)
    assert reply_text(empty) == "⚠️ Give the card's keys: words or names, separated by commas."
    long = await world.slash(world.gm, world.table, "dm card add", keys="lore", text="x" * 601)
    assert reply_text(long) == "⚠️ A card is at most 600 characters (this one has 601)."
    assert reply_text(await world.slash(world.bob, world.table, "dm card remove", card_id=card.id)) == REFUSAL
    gone = await world.slash(world.gm, world.table, "dm card remove", card_id=card.id)
    assert reply_text(gone) == f"🗑️ Card #{card.id} removed." and await world.store.cards(campaign.id) == []
    again = await world.slash(world.gm, world.table, "dm card remove", card_id=card.id)
    assert reply_text(again) == f"⚠️ This campaign has no card #{card.id}."
    assert reply_text(await world.slash(world.alice, world.table, "dm card list")).startswith("No story cards yet")


async def test_a_card_enters_the_prompt_when_its_key_is_mentioned_and_memory_last_lists_it(world, model):
    campaign = await start(world)
    await world.slash(world.gm, world.table, "dm card add", keys="Mirelda, innkeeper", text=LORE)
    await world.slash(world.gm, world.table, "dm memory add", fact="Bram owes the smith 30 gold.")
    model.script = "Rain drums on the crypt's roof."
    await world.alice.send(world.table, "I look around the crypt.")
    await world.slash(world.alice, world.table, "dm continue")
    assert "Drowned Rat" not in model.calls[-1][0]  # no key, no card
    assert "Story cards" not in reply_text(await world.slash(world.alice, world.table, "dm memory last"))

    await world.bob.send(world.table, "I ask the innkeepers about the crypt.")
    await world.slash(world.bob, world.table, "dm continue")
    prompt = model.calls[-1][0]
    assert prompt.index("Bram owes the smith") < prompt.index(LORE) < prompt.index("What the players do now")
    last = reply_text(await world.slash(world.bob, world.table, "dm memory last"))
    assert "Story cards:" in last
    assert "(key: innkeeper) Mirelda runs the Drowned Rat inn" in last.replace("\\", "")
    await world.env.settle()
    assert (await world.store.last_turn(campaign.id)).number == 2
