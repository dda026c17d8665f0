"""Character sheets through SimCord: set and show, HP, inventory and gold changed by amounts, other
players' sheets for admins only, bad input refused with nothing stored, the party in the DM's prompt and
the sheet's modifiers in a roll."""
from __future__ import annotations

import json

import discord
from discord_world import reply_text
from test_discord import bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)


async def set_fields(world, actor, **fields) -> None:
    for field, value in fields.items():
        result = await world.slash(actor, world.table, "dm sheet set", field=field, value=value)
        said = discord.utils.escape_markdown(f"{field} set.")  # max_hp shows as written
        assert result.ephemeral and reply_text(result) == f"📜 {said}", reply_text(result)


async def test_a_sheet_is_set_shown_changed_by_amounts_and_read_by_the_dm(world, model):
    model.script = "The arrow finds its mark."
    campaign = await start(world)
    await set_fields(world, world.alice, pronouns="she", ancestry="elf", **{"class": "ranger"}, level="3",
                     max_hp="24", hp="20", ac="14", dex="16", skills="stealth, perception", temp_hp="3")
    hurt = await world.slash(world.alice, world.table, "dm hp", change="-5")
    assert not hurt.ephemeral and reply_text(hurt) == "📜 Aria takes 5 damage (HP 18/24)"
    got = await world.slash(world.alice, world.table, "dm inventory add", item="arrow", quantity=20)
    assert reply_text(got) == "📜 Aria gains 20 arrow"
    used = await world.slash(world.alice, world.table, "dm inventory remove", item="Arrow", quantity=3)
    assert reply_text(used) == "📜 Aria loses 3 arrow"
    assert reply_text(await world.slash(world.alice, world.table, "dm inventory gold", change=12)) == "📜 Aria gains 12 gold (12 gold)"
    result = await world.slash(world.bob, world.table, "dm sheet show", player=world.alice)
    (embed,) = (result.response or result.followups[-1]).embeds
    line = "Aria (she, elf ranger 3): HP 18/24, AC 14; carries 17 arrow; 12 gold"
    fields = {field.name: field.value for field in embed.fields}
    assert result.ephemeral and embed.title == "📜 Aria" and embed.description == line
    assert "DEX 16 (+3)" in fields["Abilities"] and fields["Skills"] == "stealth +5, perception +2"
    assert fields["Inventory"] == "17 arrow"

    rolled = await world.slash(world.alice, world.table, "dm roll", dice="1d20+stealth", reason="Stealth")
    assert "+ 5 = `" in reply_text(rolled)  # the sheet's Stealth: +3 dexterity, +2 proficiency
    await world.alice.send(world.table, "I shoot at the wolf.")
    await world.slash(world.alice, world.table, "dm continue")
    prompt = model.calls[-1][0]
    assert f"The party:\n- {line}" in prompt

    stored = json.loads((await world.store.sheets(campaign.id))[world.alice.id])
    assert stored["hp"] == 18 and stored["inventory"] == {"arrow": 17}


async def test_only_admins_change_another_players_sheet_and_bad_input_stores_nothing(world, model):
    campaign = await start(world)
    await set_fields(world, world.bob, max_hp="12", hp="12")
    refused = await world.slash(world.alice, world.table, "dm hp", change="-50", player=world.bob)
    assert refused.ephemeral and "Only members with Manage Server" in reply_text(refused)
    down = await world.slash(world.gm, world.table, "dm hp", change="-50", player=world.bob)
    assert reply_text(down) == "📜 Bram takes 50 damage (HP 0/12); Bram is down"
    before = dict(await world.store.sheets(campaign.id))
    for command, options, said in (
        ("dm sheet set", {"field": "dex", "value": "99"}, "Dex must be from 1 to 30"),
        ("dm sheet set", {"field": "skills", "value": "flying"}, "no skill called flying"),
        ("dm inventory remove", {"item": "torch"}, "Bram has no torch"),
        ("dm inventory gold", {"change": -1}, "only 0 gold"),
        ("dm hp", {"change": "-1d0"}, "0-sided"),
    ):
        result = await world.slash(world.bob, world.table, command, **options)
        assert result.ephemeral and said.lower() in reply_text(result).lower(), (command, reply_text(result))
    assert await world.store.sheets(campaign.id) == before


async def test_a_sheet_exports_as_a_json_file(world, model):
    await start(world)
    await set_fields(world, world.alice, ac="15")
    exported = await world.slash(world.alice, world.table, "dm sheet export")
    message = exported.followups[-1] if exported.followups else exported.response
    (attachment,) = message.attachments
    assert exported.ephemeral and attachment.filename == f"sheet-{world.alice.id}.json"
    nothing = await world.slash(world.bob, world.table, "dm sheet show")
    assert "Bram has no sheet yet" in reply_text(nothing)


async def test_a_sheet_round_trips_through_export_and_import_and_a_bad_file_stores_nothing(world, model):
    campaign = await start(world)
    await set_fields(world, world.alice, ac="15", dex="16", skills="stealth", notes="Owes Bram a silver ring.")
    await world.slash(world.alice, world.table, "dm inventory add", item="rope", quantity=2)
    exported = await world.slash(world.alice, world.table, "dm sheet export")
    (attachment,) = (exported.followups[-1] if exported.followups else exported.response).attachments
    data = await attachment.read()
    assert json.loads(data) == json.loads((await world.store.sheets(campaign.id))[world.alice.id])

    refused = await world.slash(world.alice, world.table, "dm sheet import", file=("aria.json", data), player=world.bob)
    assert refused.ephemeral and "Only members with Manage Server" in reply_text(refused)
    assert world.bob.id not in await world.store.sheets(campaign.id)
    imported = await world.slash(world.gm, world.table, "dm sheet import", file=("aria.json", data), player=world.bob)
    assert reply_text(imported) == "📜 Aria's sheet imported."
    sheets = await world.store.sheets(campaign.id)
    assert json.loads(sheets[world.bob.id]) == json.loads(sheets[world.alice.id])

    before = dict(sheets)
    for name, body, said in (("x.json", b"not json at all", "not a sheet's JSON"),
                             ("x.json", b'{"name": "Aria", "dex": 99}', "dex must be from 1 to 30"),
                             ("x.json", b'["a list"]', "an object with at least a name"),
                             ("x.json", b'{"name": "Aria", "inventory": {"rope": -2}}', "at least 1"),
                             ("big.json", b" " * (64 * 1024 + 1), "at most 64 KB")):
        result = await world.slash(world.alice, world.table, "dm sheet import", file=(name, body))
        assert result.ephemeral and said.lower() in reply_text(result).lower(), reply_text(result)
    assert await world.store.sheets(campaign.id) == before
