"""Group play in a Discord channel, through SimCord: the real bot from create_bot, the session's real
models (tiny generations), a temp SQLite file per test.

Every slash command and button goes through `World.slash` / `World.click`, which check that the bot
acknowledged it first and within Discord's 3 seconds; after every test no message anywhere may show
a traceback (the `world` fixture's teardown).
"""
from __future__ import annotations

import logging
import re
import time
import urllib.parse
from types import SimpleNamespace

import discord
import pytest
from discord_world import (ADMIN_ROLE, WRITING_MARK, ModelStandIn, World, assert_pieces_of,
                           reply_text)

import cogs.render
from bot.app import create_bot
from cogs.errors import SORRY
from cogs.render import LIMIT, WRITING
from cogs.table import CUT, STORED

pytestmark = pytest.mark.simcord(settle_timeout=120)
REFUSAL = f"🔒 Only members with Manage Server or the {ADMIN_ROLE} role can do that."
PREMISE = "A lantern-lit crypt below the old abbey."


# --- fixtures: the bot as the owner runs it, over the session's models ---
@pytest.fixture
def model(text_backend):
    return ModelStandIn(text_backend)


@pytest.fixture
def bot_config(make_config, request):
    """Tiny generations, no summaries; more settings by section via @pytest.mark.config(...)."""
    sections = {"llm": {"generation": {"max_new_tokens": 8}}, "memory": {"summarize_every": 0},
                "runner": {"batch_wait_ms": 5}, "discord": {"admin_role": ADMIN_ROLE}}
    marker = request.node.get_closest_marker("config")
    for name, values in (marker.kwargs if marker else {}).items():
        if name == "llm" and "generation" in values:
            sections["llm"]["generation"].update(values["generation"])
            values = {k: v for k, v in values.items() if k != "generation"}
        sections.setdefault(name, {}).update(values)
    return make_config(**sections)


async def close_services(bot) -> None:
    """What the bot's close() does to its services (SimCord detaches a bot without closing it)."""
    services, bot.services = bot.services, None
    if services is not None:
        await services.close()


@pytest.fixture
async def make_bot(bot_config, model, embedder):
    bots = []

    def make():
        bots.append(create_bot(bot_config, text_model=model, embed_model=embedder))
        return bots[-1]

    yield make
    for bot in bots:
        await close_services(bot)


@pytest.fixture
def simcord_bot(make_bot):
    return make_bot()


@pytest.fixture
async def world(simcord_env, caplog):
    built = await World.create(simcord_env)
    yield built
    built.assert_no_leaks()
    # The bot's tree handler takes over tree.on_error in setup_hook, after SimCord wrapped it, so
    # SimCord's check_errors never sees a failed command: the handler's log does. Tests that cause
    # failures on purpose read them with logged_failures(), which also accepts them.
    unexpected = [r.getMessage() for r in caplog.get_records("call")
                  if r.levelno >= logging.ERROR and id(r) not in built.accepted_logs]
    assert not unexpected, unexpected


def logged_failures(world: World, caplog) -> list[logging.LogRecord]:
    """The errors logged with a traceback so far (by the tree handler or the runner), accepted."""
    records = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    world.accepted_logs.update(id(r) for r in records)
    return records


async def start(world: World, channel=None, premise: str = PREMISE):
    channel = channel or world.table
    await world.slash(world.gm, channel, "dm start", premise=premise)
    campaign = await world.store.campaign_for_channel(channel.id)
    assert campaign is not None
    return campaign


async def pending_texts(world: World, campaign) -> list[str]:
    return [a.text for a in await world.store.pending_actions(campaign.id)]


def buttons(result) -> dict[str, bool]:
    """The buttons on an interaction's reply, by label: whether each is disabled."""
    return {c["label"]: bool(c.get("disabled")) for row in result.response.components for c in row["components"]}


def reactions(channel, message) -> list[str]:
    (current,) = [m for m in channel.history() if m.id == message.id]
    return [str(r.emoji) for r in current.reactions]


async def slash_together(world: World, calls) -> list:
    """Several slash commands in flight at once. SimCord settles the bot inside every actor verb and
    refuses overlapping verbs (asyncio.gather of two `slash` calls raises SetupError), so all but
    the last interaction are sent with settling switched off for a moment (SimCord internal:
    Env._settle_internal); the last call settles them all."""
    env, results = world.env, []

    async def no_settle(*args, **kwargs):
        return None

    env._settle_internal = no_settle
    try:
        for actor, channel, name in calls[:-1]:
            results.append(await actor.slash(channel, name))
    finally:
        del env._settle_internal
    actor, channel, name = calls[-1]
    results.append(await world.slash(actor, channel, name))
    await env.settle()
    return results


# --- 1. starting a campaign ---
async def test_start_answers_publicly_refuses_a_second_start_and_a_thread_is_its_own_table(world):
    result = await world.slash(world.alice, world.table, "dm start", premise="Smugglers in a drowned city")
    text = reply_text(result)
    assert text.startswith("🎲 A new campaign begins in this channel. Smugglers in a drowned city")
    assert not result.ephemeral and text in [m.content for m in world.table.history(viewer=world.bob)]
    campaign = await world.store.campaign_for_channel(world.table.id)
    assert (campaign.name, campaign.premise, campaign.language) == ("table", "Smugglers in a drowned city", "en")

    again = await world.slash(world.bob, world.table, "dm start", premise="A different story")
    assert reply_text(again) == "⚠️ This channel already has a campaign running: table."
    assert again.ephemeral  # a refusal goes only to who asked, not to the table
    assert [c.id for c in await world.store.list_campaigns()] == [campaign.id]

    bad = await world.slash(world.bob, world.side, "dm start", language="english!")
    assert "'english!' is not a language code" in reply_text(bad)
    assert await world.store.campaign_for_channel(world.side.id) is None

    thread = world.thread(world.table, "side-quest", world.alice)
    in_thread = await world.slash(world.alice, thread, "dm start", premise="A detour through the sewers")
    assert reply_text(in_thread).startswith("🎲 A new campaign begins")
    side_quest = await world.store.campaign_for_channel(thread.id)
    assert side_quest.id != campaign.id and side_quest.name == "side-quest"
    # Opening the thread posted "alice started a thread: side-quest" in the table: no action.
    assert any(m.type == discord.MessageType.thread_created for m in world.table.history())
    assert await pending_texts(world, campaign) == []
    message = await world.alice.send(thread, "I follow the side passage.")
    assert reactions(thread, message) == [STORED]
    assert await pending_texts(world, side_quest) == ["I follow the side passage."]
    assert await pending_texts(world, campaign) == []

    nothing = await world.slash(world.alice, world.side, "dm continue")
    assert reply_text(nothing) == "⚠️ There is no campaign in this channel; start one with /dm start."
    assert nothing.ephemeral


# --- 2. actions: stored before they are marked, ignored when not actions, consumed in order ---
@pytest.mark.config(discord={"action_max_chars": 60})
async def test_actions_are_stored_before_the_mark_and_consumed_in_order(world, model):
    campaign = await start(world)
    in_db_at_mark: list[list[str]] = []  # the pending actions in SQLite when each ✍️ is requested
    stored_mark = urllib.parse.quote(STORED)
    world.requests.hooks.append(
        lambda e: in_db_at_mark.append(world.pending_in_db()) if e.method == "PUT" and stored_mark in e.path else None)

    first, second = "I light a torch and step into the crypt.", "I guard the door with my axe."
    m1 = await world.alice.send(world.table, first)
    assert reactions(world.table, m1) == [STORED]
    assert await pending_texts(world, campaign) == [first]
    m2 = await world.bob.send(world.table, second)
    assert reactions(world.table, m2) == [STORED]
    assert in_db_at_mark == [[first], [first, second]]

    ignored = [
        await world.alice.send(world.table, "((brb, pizza))"),
        await world.bob.send(world.table, "// can I roll for that?"),
        await world.alice.send(world.table, "", attachments=[("map.txt", b"a map of the crypt")]),
        await world.guild.add_member(world.env.create_user("dicebot", bot=True)).send(world.table, "Rolled 17"),
        await world.guild.create_webhook(world.table, "News").send("The harvest fair opens today"),
    ]
    for message in ignored:
        assert reactions(world.table, message) == [], message.content
    assert await pending_texts(world, campaign) == [first, second]

    long_action = "I run " + "and run " * 15 + "until dawn."
    m3 = await world.alice.send(world.table, long_action)
    assert reactions(world.table, m3) == [STORED, CUT]
    note = [m for m in world.bot_messages(world.table) if m.reference and m.reference.message_id == m3.id]
    assert [m.content for m in note] == ["-# your action was cut to 60 characters."]
    cut = (await pending_texts(world, campaign))[-1]
    assert len(cut) <= 62 and cut.endswith(" …") and long_action.startswith(cut[:-2])

    result = await world.slash(world.gm, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert [(a.author_name, a.text) for a in turn.actions] == [("Aria", first), ("Bram", second), ("Aria", cut)]
    assert [a.id for a in turn.actions] == sorted(a.id for a in turn.actions)
    assert await pending_texts(world, campaign) == [] and world.pending_in_db() == []
    prompt = model.calls[-1][0]
    assert prompt.index(f"Aria: {first}") < prompt.index(f"Bram: {second}") < prompt.index(f"Aria: {cut[:30]}")
    assert turn.narration and reply_text(result) == turn.narration
    assert turn.narration in [m.content for m in world.table.history(viewer=world.bob)]


# --- 3. streaming ---
@pytest.mark.config(llm={"generation": {"max_new_tokens": 40, "min_new_tokens": 40}})
async def test_the_reply_streams_with_a_writing_mark_at_most_once_a_second(world, model, monkeypatch):
    # SimCord freezes time.monotonic inside the bot (its virtual clock moves only with the bot's own
    # sleeps or env.advance_time); the throttle is about real seconds, so the renderer gets the wall
    # clock back, as it has in production.
    monkeypatch.setattr(cogs.render, "time", SimpleNamespace(monotonic=time.perf_counter))
    # The stream shows whole sentences only (what the story keeps): a scripted reply of many short
    # ones, 60 pieces at 0.05 s, at least 3 s however fast the machine.
    model.script = " ".join(f"The door groans on hinge {n}." for n in range(12))
    model.token_delay = 0.05
    campaign = await start(world)
    await world.alice.send(world.table, "I push the iron door open.")
    first_request, began = len(world.requests), time.perf_counter()
    result = await world.slash(world.alice, world.table, "dm continue")
    elapsed = time.perf_counter() - began

    (_, callback), *_ = world.requests.since(first_request, "POST", "/interactions/*/callback")
    assert callback.json == {"type": 5}  # deferred ("thinking…"), the narration comes as edits
    edits = world.requests.since(first_request, "PATCH", "/webhooks/*/messages/@original")
    contents = [e.json["content"] for _, e in edits]
    turn = await world.store.last_turn(campaign.id)
    assert len(edits) >= 3, contents
    assert all(c.endswith(WRITING) for c in contents[:-1]), contents
    assert contents[-1] == turn.narration == reply_text(result) and WRITING_MARK not in contents[-1]
    streamed = [c[: -len(WRITING)] for c in contents[:-1]]
    assert all(later.startswith(earlier) and later != earlier for earlier, later in zip(streamed, streamed[1:]))
    stream_times = [at for at, _ in edits[:-1]]
    gaps = [b - a for a, b in zip(stream_times, stream_times[1:])]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert len(edits) - 1 <= elapsed + 1, (len(edits), elapsed)
    assert result.followups == [] and len(world.bot_messages(world.table)) == 2  # start + this reply


# --- 4. a long narration ---
LONG_STORY = "\n\n".join(
    " ".join(f"Chapter {c}, line {n}: the lantern sways while the party descends another worn step."
             for n in range(12)) for c in range(6))


async def test_a_long_narration_is_split_into_further_channel_messages(world, model):
    model.script = LONG_STORY  # stands in for "the model wrote 5,000 characters"
    campaign = await start(world)
    await world.alice.send(world.table, "We go all the way down.")
    first_request = len(world.requests)
    result = await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration == LONG_STORY and len(LONG_STORY) > 2 * LIMIT

    messages = [m for m in world.bot_messages(world.table) if m.id >= result.response.id]
    parts = [m.content for m in messages]
    assert len(parts) == 3 and all(len(p) <= LIMIT for p in parts), [len(p) for p in parts]
    assert_pieces_of(parts, turn.narration)
    assert not any(WRITING_MARK in p for p in parts)
    assert parts[0] == result.response.content and result.followups == []
    sent = world.requests.since(first_request, "POST", f"/channels/{world.table.id}/messages")
    assert len(sent) == 2 and all(m.interaction_metadata is None for m in messages[1:])


async def test_players_withdraw_or_change_their_pending_actions(world):
    campaign = await start(world)
    gone = await world.alice.send(world.table, "I kick the altar.")
    changed = await world.bob.send(world.table, "I light a candle.")
    await world.alice.send(world.table, "I read the inscription.")
    await world.alice.delete(gone)  # a deleted message takes its pending action with it
    await world.bob.edit(changed, "I light two candles and hum.")
    assert await pending_texts(world, campaign) == ["I light two candles and hum.", "I read the inscription."]

    mine = await world.alice.slash(world.table, "dm withdraw")
    assert mine.ephemeral and reply_text(mine) == "↩️ Taken back: I read the inscription."
    assert await pending_texts(world, campaign) == ["I light two candles and hum."]
    nothing = await world.slash(world.alice, world.table, "dm withdraw")
    assert nothing.ephemeral and reply_text(nothing) == "⚠️ There is no pending action to take back."
    refused = await world.slash(world.alice, world.table, "dm withdraw", player=world.bob)
    assert refused.ephemeral and reply_text(refused) == REFUSAL
    await world.bob.edit(changed, "((never mind))")  # edited out of character: withdrawn
    assert await pending_texts(world, campaign) == []

    kept = await world.bob.send(world.table, "I blow the candles out.")
    await world.bob.send(world.table, "I wait in the dark.")
    taken = await world.slash(world.gm, world.table, "dm withdraw", player=world.bob)  # admins: anyone's
    assert reply_text(taken) == "↩️ Taken back: I wait in the dark."
    await world.slash(world.alice, world.table, "dm continue")
    await world.bob.delete(kept)  # narrated already: the story keeps it
    await world.bob.edit(changed, "I light the candle again.")  # withdrawn already: nothing comes back
    (turn,) = await world.store.recent_turns(campaign.id, 5)
    assert [a.text for a in turn.actions] == ["I blow the candles out."]
    assert await pending_texts(world, campaign) == []


# --- 5. retry and undo ---
async def test_retry_replaces_the_narration_and_undo_gives_the_actions_back(world, model):
    campaign = await start(world)
    await world.slash(world.gm, world.table, "dm memory add", fact="The abbot owes Aria ten silver.")
    first, second = "I pry open the reliquary.", "I keep watch on the stairs."
    await world.alice.send(world.table, first)
    await world.bob.send(world.table, second)
    await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    exact = [m for m in await world.store.memories(campaign.id) if m.kind == "exact"]
    assert exact and {(m.turn_from, m.turn_to) for m in exact} == {(1, 1)}
    assert f"Aria: {first}" in [m.shown for m in exact]

    model.script = "The reliquary holds only dust and a single silver key."
    retried = await world.slash(world.bob, world.table, "dm retry")
    again = await world.store.last_turn(campaign.id)
    assert (again.id, again.number) == (turn.id, 1) and await world.store.turn_count(campaign.id) == 1
    assert again.narration == model.script != turn.narration
    assert [a.id for a in again.actions] == [a.id for a in turn.actions]
    assert reply_text(retried) == f"{model.script}\n-# 🔁 retold · turn 1"
    texts = [m.text for m in await world.store.memories(campaign.id)]
    assert model.script in texts and turn.narration not in texts

    undone = await world.slash(world.gm, world.table, "dm undo")
    assert reply_text(undone) == "↩️ Turn 1 was undone; its actions are pending again."
    assert await world.store.turn_count(campaign.id) == 0
    assert [a.id for a in await world.store.pending_actions(campaign.id)] == [a.id for a in turn.actions]
    assert await pending_texts(world, campaign) == [first, second]
    assert [m.text for m in await world.store.memories(campaign.id)] == ["The abbot owes Aria ten silver."]
    assert reply_text(await world.slash(world.gm, world.table, "dm undo")) == "Nothing to undo yet."
    nothing = await world.slash(world.gm, world.table, "dm retry")
    assert reply_text(nothing) == "⚠️ There is no narration to retry yet."


# --- 6. memory ---
async def test_memory_show_pages_add_forget_and_reset_with_its_confirm_buttons(world):
    campaign = await start(world)
    await world.alice.send(world.table, "I ring the abbey bell.")
    await world.slash(world.alice, world.table, "dm continue")
    exact = await world.store.memories(campaign.id)
    assert exact and not any(m.pinned for m in exact)
    for n in range(11):
        added = await world.slash(world.gm, world.table, "dm memory add", fact=f"Fact {n}: the bell tolled {n} times.")
        assert added.ephemeral and reply_text(added).startswith("📌 Pinned `#")
    memories = await world.store.memories(campaign.id)
    pinned = [m for m in memories if m.pinned]
    assert [m.text for m in pinned] == [f"Fact {n}: the bell tolled {n} times." for n in range(11)]
    total = len(memories)

    shown = await world.slash(world.alice, world.table, "dm memory show")
    assert shown.ephemeral and shown.response.content not in [m.content for m in world.table.history(viewer=world.bob)]
    page1 = reply_text(shown)
    assert page1.splitlines()[0] == f"**What the DM remembers** ({total}; page 1/2)"
    assert [line.split()[0] for line in page1.splitlines()[1:]] == ["📌"] * 10
    assert "Fact 0:" in page1 and "📝" not in page1 and buttons(shown) == {"Previous": True, "Next": False}
    page2 = reply_text(await world.click(world.alice, shown.response, "Next"))
    assert "page 2/2" in page2 and "Fact 10:" in page2 and "📝" in page2 and "Fact 0:" not in page2
    assert [line.split()[0] for line in page2.splitlines()[1:]] == ["📌"] + ["📝"] * (total - 11)
    assert buttons(shown) == {"Previous": False, "Next": True}  # True: disabled
    assert reply_text(await world.click(world.alice, shown.response, "Previous")) == page1

    victim = pinned[0]
    forgot = await world.slash(world.gm, world.table, "dm memory forget", memory_id=victim.id)
    assert reply_text(forgot) == f"🗑️ Forgot `#{victim.id}`." and forgot.ephemeral
    assert victim.id not in [m.id for m in await world.store.memories(campaign.id)]
    unknown = await world.slash(world.gm, world.table, "dm memory forget", memory_id=987654)
    assert reply_text(unknown) == "⚠️ This campaign has no memory #987654."
    assert await world.store.memory_count(campaign.id) == total - 1

    asked = await world.slash(world.gm, world.table, "dm memory reset")
    assert reply_text(asked) == f"⚠️ Forget all {total - 1} memories of **table**, pinned facts too?"
    kept = await world.click(world.gm, asked.response, "Keep them")
    assert reply_text(kept) == "Nothing was forgotten." and kept.response.components == []
    assert await world.store.memory_count(campaign.id) == total - 1

    asked = await world.slash(world.gm, world.table, "dm memory reset")
    wiped = await world.click(world.gm, asked.response, "Forget everything")
    assert reply_text(wiped) == f"🧹 The DM forgot {total - 1} memories of this campaign."
    assert await world.store.memory_count(campaign.id) == 0
    assert reply_text(await world.slash(world.alice, world.table, "dm memory show")) == "The DM remembers nothing yet."


async def test_memory_last_shows_what_the_last_turn_remembered(world, model):
    # Scripted: what the tiny model writes in 8 tokens differs between CPUs, and a turn it writes
    # only players' lines for is not narrated at all.
    model.script = "The bell tolls over the abbey."
    campaign = await start(world)
    nothing = await world.slash(world.alice, world.table, "dm memory last")
    assert nothing.ephemeral and reply_text(nothing) == "No turn has been narrated yet."
    await world.slash(world.gm, world.table, "dm memory add", fact="The abbot's *secret* is the crypt key.")
    await world.alice.send(world.table, "I ring the abbey bell.")
    await world.slash(world.alice, world.table, "dm continue")
    await world.bob.send(world.table, "I ask about the crypt key.")
    await world.slash(world.bob, world.table, "dm continue")
    last = await world.slash(world.bob, world.table, "dm memory last")
    text = reply_text(last)
    assert last.ephemeral and text.splitlines()[0].startswith("**Turn 2's prompt:") and "tokens" in text
    (fact,) = [m for m in await world.store.memories(campaign.id) if m.pinned]
    assert f"#{fact.id}" in text and "\\*secret\\*" in text  # players' markdown shown as written
    assert "Recent story: turn 1" in text and "/dm memory add" in text
    assert text not in [m.content for m in world.table.history(viewer=world.alice)]


async def test_admin_commands_refuse_members_without_the_role_and_serve_those_with_it(world):
    campaign = await start(world)
    await world.slash(world.gm, world.table, "dm memory add", fact="The gate code is 4-1-7.")
    (fact,) = await world.store.memories(campaign.id)
    for name, options in [("dm memory add", {"fact": "Aria is the queen."}),
                          ("dm memory forget", {"memory_id": fact.id}), ("dm memory reset", {}),
                          ("dm settings", {}), ("dm settings", {"name": "temperature", "value": "0.5"}),
                          ("dm end", {})]:
        refused = await world.slash(world.alice, world.table, name, **options)
        assert refused.ephemeral and reply_text(refused) == REFUSAL, name
        assert all(m.content != REFUSAL for m in world.table.history(viewer=world.bob)), name
        assert all(not m.components for m in world.table.history(viewer=world.alice)), name  # no reset button
    assert [m.text for m in await world.store.memories(campaign.id)] == ["The gate code is 4-1-7."]
    campaign = await world.store.campaign_for_channel(world.table.id)
    assert campaign is not None and campaign.settings == {}

    by_mod = await world.slash(world.mod, world.table, "dm settings", name="temperature", value="0.7")
    assert reply_text(by_mod).startswith("✅ temperature set.")  # Manage Server, without the role
    by_gm = await world.slash(world.gm, world.table, "dm memory forget", memory_id=fact.id)
    assert reply_text(by_gm) == f"🗑️ Forgot `#{fact.id}`."  # the role, without Manage Server
    ended = await world.slash(world.gm, world.table, "dm end")
    assert reply_text(ended) == "🏁 The campaign **table** has ended; its story is kept." and not ended.ephemeral
    assert await world.store.campaign_for_channel(world.table.id) is None


# --- 7. settings and status ---
async def test_settings_show_set_and_refuse_bad_values_and_status_counts(world, model):
    campaign = await start(world)
    shown = reply_text(await world.slash(world.gm, world.table, "dm settings"))
    assert "`temperature` = 0.8" in shown and "`max_new_tokens` = 8" in shown and "`summarize_every` = 0" in shown
    changed = await world.slash(world.gm, world.table, "dm settings", name="temperature", value="0.5")
    assert changed.ephemeral and reply_text(changed).startswith("✅ temperature set.")
    assert "`temperature` = 0.5 *(this campaign)*" in reply_text(changed)
    assert (await world.store.get_campaign(campaign.id)).settings == {"temperature": 0.5}

    hot = await world.slash(world.gm, world.table, "dm settings", name="temperature", value="hot")
    assert reply_text(hot) == "⚠️ Temperature must be a number or true/false, not 'hot'."
    nine = await world.slash(world.gm, world.table, "dm settings", name="temperature", value="9")
    assert reply_text(nine) == "⚠️ Temperature=9.0 is out of range."
    no_value = await world.slash(world.gm, world.table, "dm settings", name="top_k")
    assert reply_text(no_value) == "⚠️ Give a value for top_k (or 'default')."
    assert (await world.store.get_campaign(campaign.id)).settings == {"temperature": 0.5}
    back = await world.slash(world.gm, world.table, "dm settings", name="temperature", value="default")
    assert "`temperature` = 0.8\n" in reply_text(back)
    assert (await world.store.get_campaign(campaign.id)).settings == {}

    await world.alice.send(world.table, "I read the inscription.")
    await world.slash(world.alice, world.table, "dm continue")
    await world.bob.send(world.table, "I copy it onto parchment.")
    status = await world.slash(world.bob, world.table, "dm status")
    memories = await world.store.memory_count(campaign.id)
    assert status.ephemeral and reply_text(status).splitlines() == [
        f"🧠 Model: {model.name}", "⏳ Queue: 0 here, 0 in all", "🎲 Campaign: table (language en)",
        "📜 Turns: 1", f"📌 Memories: {memories}", "✍️ Pending actions: 1",
        "🎲 Rounds: off (the DM narrates on `/dm continue`)"]
    assert memories >= 2
    elsewhere = reply_text(await world.slash(world.bob, world.side, "dm status"))
    assert elsewhere.endswith("No campaign in this channel: start one with `/dm start`.")
    await world.services.text.stop()  # the model worker is gone: status says so
    stopped = reply_text(await world.slash(world.bob, world.table, "dm status"))
    assert stopped.splitlines()[0] == f"🧠 Model: {model.name} (unavailable: the model worker stopped)"


async def test_admins_change_the_premise_style_and_authors_note_after_the_start(world, model):
    campaign = await start(world)
    for name, value in (("premise", "A drowned city beneath the marsh."), ("style", "ink wash, muted greens"),
                        ("author_note", "Keep it grim; the rain never stops.")):
        set_ = await world.slash(world.gm, world.table, "dm settings", name=name, value=value)
        assert reply_text(set_).startswith(f"✅ {name} set.") and f"`{name}` = {value}" in reply_text(set_)
    refused = await world.slash(world.alice, world.table, "dm settings", name="premise", value="Mine now.")
    assert "Mine now." not in (await world.store.get_campaign(campaign.id)).premise and refused.ephemeral
    await world.alice.send(world.table, "I wade into the flooded street.")
    await world.slash(world.alice, world.table, "dm continue")
    prompt = model.calls[-1][0]
    assert "The campaign: A drowned city beneath the marsh." in prompt and "Style: ink wash, muted greens" in prompt
    # the author's note stands right before what the players do now, near the end
    assert prompt.index("Author's note: Keep it grim; the rain never stops.") < prompt.index("What the players do now:")
    assert prompt.index("The story so far:") < prompt.index("Author's note:") if "The story so far:" in prompt else True
    cleared = await world.slash(world.gm, world.table, "dm settings", name="author_note", value="default")
    assert "`author_note` = (none)" in reply_text(cleared)
    assert (await world.store.get_campaign(campaign.id)).settings == {}
    long = await world.slash(world.gm, world.table, "dm settings", name="author_note", value="x" * 500)
    # Refused, not cut (issue 19: every limit checked in the engine, one message style): nothing stored.
    assert "at most 300 characters" in reply_text(long) and long.ephemeral
    assert (await world.store.get_campaign(campaign.id)).settings == {}


# --- 8. two channels at once ---
@pytest.mark.config(runner={"batch_wait_ms": 2000})
async def test_two_channels_play_at_the_same_time_each_with_its_own_story(world, model):
    crypt, market = await start(world), await start(world, world.side, "A fish market at dawn.")
    await world.alice.send(world.table, "I climb the bell tower.")
    await world.bob.send(world.side, "I haggle with the fishmonger.")
    calls_before = len(model.calls)
    in_crypt, in_market = await slash_together(
        world, [(world.alice, world.table, "dm continue"), (world.bob, world.side, "dm continue")])

    crypt_turn, market_turn = await world.store.last_turn(crypt.id), await world.store.last_turn(market.id)
    assert [a.text for a in crypt_turn.actions] == ["I climb the bell tower."]
    assert [a.text for a in market_turn.actions] == ["I haggle with the fishmonger."]
    assert reply_text(in_crypt) == crypt_turn.narration and in_crypt.response.channel_id == world.table.id
    assert reply_text(in_market) == market_turn.narration and in_market.response.channel_id == world.side.id
    assert crypt_turn.narration in [m.content for m in world.table.history()]
    assert market_turn.narration in [m.content for m in world.side.history()]
    # Both turns were generated at once, in one batched call, each from its own channel's story.
    (batch,) = model.calls[calls_before:]
    assert len(batch) == 2
    crypt_prompt, market_prompt = sorted(batch, key=lambda p: "fishmonger" in p)
    assert "bell tower" in crypt_prompt and "fishmonger" not in crypt_prompt and "abbey" in crypt_prompt
    assert "fishmonger" in market_prompt and "bell tower" not in market_prompt and "fish market" in market_prompt


# --- 9. a restart ---
async def test_a_restart_keeps_the_campaign_and_the_pending_actions(world, make_bot):
    campaign = await start(world)
    await world.alice.send(world.table, "I hide the map under a loose stone.")
    old = world.env.bot
    await world.env.restart_bot(make_bot())
    await close_services(old)  # the old process is gone
    assert world.env.bot is not old and world.store is not None
    assert (await world.store.campaign_for_channel(world.table.id)).id == campaign.id
    assert await pending_texts(world, campaign) == ["I hide the map under a loose stone."]
    late = await world.bob.send(world.table, "I stand watch by the stairs.")
    assert reactions(world.table, late) == [STORED]
    result = await world.slash(world.gm, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert [a.text for a in turn.actions] == ["I hide the map under a loose stone.", "I stand watch by the stairs."]
    assert await pending_texts(world, campaign) == [] and reply_text(result) == turn.narration


# --- 10. Discord failing ---
@pytest.mark.parametrize("method, path, outcome", [
    ("POST", "/interactions/*/*/callback", "pending"),  # not even the defer got through
    ("PATCH", "/webhooks/*/*/messages/@original", "shown in the channel"),  # the reply cannot be edited
    ("POST", "/channels/*/messages", "apology"),  # the long narration's second message fails
])
async def test_discord_failing_mid_turn_loses_no_action(world, model, caplog, method, path, outcome):
    model.script = LONG_STORY
    campaign = await start(world)
    await world.alice.send(world.table, "I pry at the sealed tomb.")
    await world.bob.send(world.table, "I brace the lid with my shield.")
    actions = await world.store.pending_actions(campaign.id)
    before = {m.id for m in world.bot_messages(world.table)}
    world.env.inject_error(method, path, status=500, times=None)
    result = await world.bob.slash(world.table, "dm continue")  # World.slash would demand the callback
    world.env.backend.faults.clear()
    new = [m for m in world.bot_messages(world.table) if m.id not in before]
    failures = [r.getMessage() for r in logged_failures(world, caplog)]
    assert world.env.errors == []  # the tree handler took them; SimCord records nothing

    turns = await world.store.turn_count(campaign.id)
    pending = await world.store.pending_actions(campaign.id)
    if outcome == "pending":  # nothing started: the actions wait for the next /dm continue
        assert turns == 0 and [a.id for a in pending] == [a.id for a in actions]
        assert not result.acknowledged and new == [] and failures == ["command dm continue failed"]
    else:  # the turn went through whole, and the players see where it stands
        turn = await world.store.last_turn(campaign.id)
        assert turns == 1 and pending == [] and turn.narration == LONG_STORY
        assert [a.id for a in turn.actions] == [a.id for a in actions]
    if outcome == "shown in the channel":  # the story moved to ordinary channel messages
        assert failures == [] and not result.response.content
        assert_pieces_of([m.content for m in new if m.id != result.response.id], LONG_STORY)
    if outcome == "apology":  # the first part shows, then a plain apology to the one who asked
        assert failures == ["command dm continue failed"]
        assert LONG_STORY.startswith(result.response.content[:200])
        assert [(f.content, f.ephemeral) for f in result.followups] == [(SORRY, True)]
    world.assert_no_leaks()

    model.script = "The lid gives way."  # and the table plays on
    after = await world.slash(world.alice, world.table, "dm continue")
    assert reply_text(after) == "The lid gives way."
    assert await world.store.turn_count(campaign.id) == turns + 1


async def test_a_failed_mark_does_not_lose_the_action(world):
    campaign = await start(world)
    world.env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=500)
    message = await world.alice.send(world.table, "I whisper the password.")
    assert reactions(world.table, message) == []
    assert await pending_texts(world, campaign) == ["I whisper the password."]
    assert world.env.errors == []  # logged, not raised
    again = await world.alice.send(world.table, "I step through.")
    assert reactions(world.table, again) == [STORED]


# --- 11. nothing the bot writes pings anyone ---
async def test_mentions_in_actions_and_narration_never_ping(world, model):
    campaign = await start(world)
    watch = world.guild.create_role("Night Watch", mentionable=True)
    message = await world.alice.send(
        world.table, f"@everyone look! {watch.mention} and {world.bob.mention}, come here!")
    (text,) = await pending_texts(world, campaign)
    assert "<@" not in text and "@\u200beveryone" in text and "@Night Watch" in text
    assert re.search(r"@(Bram|bob)\b", text)  # SimCord's mentions carry no member, so no nickname

    model.script = (f"@everyone hears it. <@{world.bob.id}> and <@&{watch.id}> rush in, and @here too. "
                    + "The bells ring on. " * 120)
    result = await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    # the model's own mentions are defused as the players' are: stored and posted as plain text
    assert "@\u200beveryone hears it. @\u200bsomeone and @\u200brole rush in, and @\u200bhere" in turn.narration
    assert "<@" not in turn.narration and re.search(r"(?<!\u200b)@(everyone|here)", turn.narration) is None
    assert reply_text(result).startswith("@\u200beveryone hears it. @\u200bsomeone")

    sent = [m for m in world.bot_messages(world.table)]
    assert len(sent) >= 3  # the start, and the narration in two messages
    for m in sent:
        stored = world.env.backend.get_message(world.table.id, m.id)  # SimCord's record of who was pinged
        assert not m.mention_everyone and not stored.ping_user_ids and not stored.ping_role_ids, m.content
    with_content = [e for e in world.requests if isinstance(e.json, dict) and "content" in e.json]
    assert with_content and all(e.json.get("allowed_mentions") == {"parse": []} for e in with_content)


# --- 12. users never see tracebacks ---
async def test_an_unexpected_failure_gets_a_plain_apology(world, monkeypatch, caplog):
    await start(world)

    async def broken(campaign_id):
        raise RuntimeError("disk on fire at /var/lib/dm/secret.sqlite3")

    monkeypatch.setattr(world.store, "turn_count", broken)
    result = await world.slash(world.alice, world.table, "dm status")
    assert result.ephemeral and reply_text(result) == SORRY
    (failure,) = logged_failures(world, caplog)
    assert failure.getMessage() == "command dm status failed" and failure.exc_info  # the traceback is logged
    assert "disk on fire" in str(failure.exc_info[1])
    assert not any("disk on fire" in m.content for m in world.all_messages())


# --- 13. a reply ready after the interaction token expired ---
@pytest.mark.parametrize("expiry", ["the bot's own clock", "Discord answers Unknown Webhook"])
async def test_a_reply_after_the_token_expired_goes_out_as_a_channel_message(world, model, monkeypatch, expiry):
    # SimCord expires interaction tokens on its virtual clock, and env.advance_time cannot run while a
    # command is still working (it settles the bot first): the expiry is produced here instead.
    if expiry == "the bot's own clock":
        monkeypatch.setattr(cogs.render, "TOKEN_LIFETIME_S", 0)  # as if 15 minutes had passed
    else:
        world.env.inject_error("PATCH", "/webhooks/*/*/messages/@original", status=404, code=10015,
                               message="Unknown Webhook", times=None)
    model.script = "The torch gutters out, and something breathes in the dark."
    campaign = await start(world)
    await world.alice.send(world.table, "I wait.")
    first_request = len(world.requests)
    result = await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration == model.script
    last = world.bot_messages(world.table)[-1]
    assert last.id != result.response.id and last.interaction_metadata is None
    assert last.content == turn.narration
    assert world.requests.since(first_request, "POST", f"/channels/{world.table.id}/messages")
    assert world.env.errors == []


VOICE_SCRIPT = ('Aria: I step inside.\nThe mill is dark and cold. I look around nervously. A lantern swings from '
                'a beam. "I have waited for you," the miller whispers. We follow him upstairs. The stairs creak '
                'under your boots.\nBram: I draw my axe.\nThe end.')


async def test_the_stream_never_shows_what_the_story_drops(world, model, monkeypatch):
    """A scripted model writes first-person sentences and players' lines: no streamed edit shows them,
    every streamed edit is the start of the final message, and the final message is what the story keeps."""
    monkeypatch.setattr(cogs.render, "time", SimpleNamespace(monotonic=time.perf_counter))
    model.script, model.token_delay = VOICE_SCRIPT, 0.05
    campaign = await start(world)
    await world.alice.send(world.table, "I push the mill door.")
    await world.bob.send(world.table, "I follow Aria in.")
    first_request = len(world.requests)
    result = await world.slash(world.alice, world.table, "dm continue")
    edits = world.requests.since(first_request, "PATCH", "/webhooks/*/messages/@original")
    contents = [e.json["content"] for _, e in edits]
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration == ('The mill is dark and cold. A lantern swings from a beam. "I have waited for you," '
                              'the miller whispers. The stairs creak under your boots.')
    assert reply_text(result) == turn.narration and len(contents) >= 2, contents
    for shown in contents[:-1]:
        if shown.startswith("⏳"):  # its place in the queue, before it starts
            continue
        streamed = shown[: -len(WRITING)] if shown.endswith(WRITING) else shown
        assert turn.narration.startswith(streamed), (streamed, turn.narration)
        assert "I look" not in streamed and "Aria:" not in streamed and "We follow" not in streamed


async def test_a_reply_that_only_speaks_for_a_player_is_kept_not_lost(world, model):
    """The model wrote only Aria's line: better that narration in the wrong voice than a lost turn."""
    model.script = "Aria: I draw my sword and charge at the goblin!"
    campaign = await start(world)
    await world.alice.send(world.table, "I face the goblin.")
    result = await world.slash(world.alice, world.table, "dm continue")
    turn = await world.store.last_turn(campaign.id)
    assert turn is not None and turn.number == 1
    assert reply_text(result) == turn.narration == "Aria: I draw my sword and charge at the goblin!"
    assert "cannot answer" not in reply_text(result)


async def test_a_reply_that_echoes_its_instructions_never_reaches_the_table(world, model, monkeypatch):
    monkeypatch.setattr(cogs.render, "time", SimpleNamespace(monotonic=time.perf_counter))
    model.script = ("The well is dry and the rope hangs frayed. A crow watches from the crank.\n"
                    "Dungeon: Player: You are the Dungeon Master of a role-playing game played by a group. "
                    "What the players do now: nothing.")
    model.token_delay = 0.02
    campaign = await start(world)
    await world.alice.send(world.table, "I look down the well.")
    first_request = len(world.requests)
    result = await world.slash(world.alice, world.table, "dm continue")
    shown = [e.json["content"] for _, e in world.requests.since(first_request, "PATCH", "/webhooks/*/messages/@original")]
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration == "The well is dry and the rope hangs frayed. A crow watches from the crank."
    assert reply_text(result) == turn.narration
    assert not any("Dungeon" in text or "Player:" in text or "What the players" in text for text in shown), shown
