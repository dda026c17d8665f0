"""/dm export and /dm import through SimCord: both formats give an attachment to who asked; an import into
another channel reproduces the campaign and the DM plays on from it; past the upload limit the file comes
gzipped in parts that join back; admins only, never into a channel with a campaign running, a bad file refused
with nothing created."""
from __future__ import annotations

import gzip
import json

import cogs.record
from discord_world import reply_text
from test_discord import REFUSAL, bot_config, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)

from engine.table.record_file import unpacked

NARRATIONS = ["The crypt door groans open onto a stair slick with lamp oil.",
              "A skeletal abbot rises from the ossuary, a silver bell in its hand."]


async def play(world, model) -> object:
    """A campaign of two turns, a roll, a sheet, a card and a pinned fact, played through the bot."""
    campaign = await start(world)
    await world.slash(world.alice, world.table, "dm sheet set", field="ac", value="15")
    await world.alice.send(world.table, "I push the crypt door.")
    await world.slash(world.bob, world.table, "dm roll", dice="1d20+2", reason="Perception")
    model.script = NARRATIONS[0]
    await world.slash(world.gm, world.table, "dm continue")
    await world.bob.send(world.table, "I ring my own bell back at the abbot.")
    model.script = NARRATIONS[1]
    await world.slash(world.gm, world.table, "dm continue")
    await world.slash(world.gm, world.table, "dm memory add", fact="The abbot fears running water.")
    await world.slash(world.gm, world.table, "dm card add", keys="bell, abbot", text="The abbot's bell wakes the dead.")
    return campaign


def attachments(result) -> list:
    messages = ([result.response] if result.response is not None else []) + list(result.followups)
    return [a for m in messages for a in m.attachments]


async def export(world, actor, format: str) -> tuple[object, list[tuple[str, bytes]]]:
    result = await world.slash(actor, world.table, "dm export", format=format)
    return result, [(a.filename, await a.read()) for a in attachments(result)]


async def test_export_in_both_formats_gives_a_file_to_who_asked(world, model):
    await play(world, model)
    result, files = await export(world, world.alice, "markdown")
    ((name, book),) = files
    assert result.ephemeral and name == "table.md"
    book = book.decode()
    assert book.startswith("# table\n") and "## Turn 1" in book and "## Turn 2" in book
    assert NARRATIONS[0] in book and "- **Aria**: I push the crypt door." in book
    assert "- **Bram**: [rolled 1d20+2 for Perception = " in book
    assert "## Story cards" in book and "- The abbot fears running water." in book

    result, files = await export(world, world.gm, "json")
    ((name, data),) = files
    record = json.loads(data)
    assert result.ephemeral and name == "table.json" and record["schema"] == 1
    assert [t["narration"] for t in record["turns"]] == NARRATIONS
    assert not world.bot_messages(world.side)


async def test_an_import_into_another_channel_reproduces_the_campaign_and_play_goes_on(world, model):
    campaign = await play(world, model)
    _, ((_, data),) = await export(world, world.gm, "json")

    imported = await world.slash(world.gm, world.side, "dm import", file=("table.json", data))
    assert imported.ephemeral and reply_text(imported).startswith("📥 Imported **table**: 2 turns, ")
    assert any("was imported here (2 turns)" in m.content for m in world.bot_messages(world.side))
    copy = await world.store.campaign_for_channel(world.side.id)
    assert copy is not None and copy.id != campaign.id
    store = world.store
    view = lambda turns: [(t.number, t.narration, [(a.author_id, a.author_name, a.text) for a in t.actions])
                          for t in turns]
    assert view(await store.recent_turns(copy.id, 10)) == view(await store.recent_turns(campaign.id, 10))
    assert [a.text for a in await store.recent_rolls(copy.id)] == [a.text for a in await store.recent_rolls(campaign.id)]
    assert await store.sheets(copy.id) == await store.sheets(campaign.id)
    assert [(c.keys, c.text) for c in await store.cards(copy.id)] == [(c.keys, c.text) for c in await store.cards(campaign.id)]
    assert [m.text for m in await store.pinned_memories(copy.id)] == ["The abbot fears running water."]
    assert sorted(m.text for m in await store.memories(copy.id)) == sorted(m.text for m in await store.memories(campaign.id))

    # the DM plays on in the new channel from the imported story, recalling its memories
    await world.alice.send(world.side, "I pour water between us and the abbot.")
    model.script = "The abbot recoils from the water."
    await world.slash(world.gm, world.side, "dm continue")
    prompt = model.calls[-1][0]
    assert NARRATIONS[1] in prompt and "The abbot fears running water." in prompt
    assert (await store.last_turn(copy.id)).number == 3


async def test_past_the_upload_limit_the_export_is_gzipped_in_parts_that_join_and_import(world, model, monkeypatch):
    await play(world, model)
    monkeypatch.setattr(cogs.record, "upload_limit", lambda interaction: 700)
    result, parts = await export(world, world.gm, "json")
    assert len(parts) > 1 and [n for n, _ in parts] == [f"table.json.gz.part{i}" for i in range(1, len(parts) + 1)]
    first = (result.response or result.followups[0]).content
    assert all(len(body) <= 700 for _, body in parts) and "join them in order" in first
    joined = b"".join(body for _, body in parts)
    record = json.loads(unpacked(joined))
    assert [t["narration"] for t in record["turns"]] == NARRATIONS

    one_part = await world.slash(world.gm, world.side, "dm import", file=parts[0])
    assert one_part.ephemeral and "join the parts" in reply_text(one_part)
    imported = await world.slash(world.gm, world.side, "dm import", file=("table.json.gz", joined))
    assert reply_text(imported).startswith("📥 Imported **table**: 2 turns")


async def test_only_admins_import_never_into_a_running_campaign_and_a_bad_file_creates_nothing(world, model):
    campaign = await play(world, model)
    _, ((_, data),) = await export(world, world.gm, "json")
    before = [c.id for c in await world.store.list_campaigns()]

    refused = await world.slash(world.alice, world.side, "dm import", file=("table.json", data))
    assert refused.ephemeral and reply_text(refused) == REFUSAL
    running = await world.slash(world.mod, world.table, "dm import", file=("table.json", data))
    assert running.ephemeral and "already has a campaign running: table" in reply_text(running)
    for name, body, said in (("x.json", b"not json", "not JSON"),
                             ("x.json", json.dumps({"schema": 999}).encode(), "newer than this bot reads"),
                             ("x.json.gz", gzip.compress(b"[1, 2]"), "not a campaign export"),
                             ("notes.txt", data, "a .json or .json.gz file")):
        result = await world.slash(world.gm, world.side, "dm import", file=(name, body))
        assert result.ephemeral and said in reply_text(result), reply_text(result)
    assert [c.id for c in await world.store.list_campaigns()] == before
    assert not world.bot_messages(world.side)
    assert await world.store.campaign_for_channel(world.table.id) == campaign
