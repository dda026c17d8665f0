"""/dm picture through SimCord against a real AUTOMATIC1111-like server on loopback (in its own thread).

Progress edits and Cancel run on SimCord's virtual clock: the `painting` fixture declares the two waits
that are outside input (the txt2img request, and the wait for 'the picture or the next progress poll'),
so the poll ticks only when the test calls `advance_time`, and the server holds the picture half done
until the test releases it or Cancel interrupts it. The picture timeout itself is tested in
test_pictures.py.
"""
from __future__ import annotations

import asyncio

import pytest
from sd_server import SDServer, ServerThread

pytestmark = pytest.mark.simcord(settle_timeout=120)


@pytest.fixture
def sd():
    thread = ServerThread(SDServer(step_delay=0.05))
    yield thread.start()
    thread.stop()


@pytest.fixture
def pictures_config(sd):
    return {"enabled": True, "url": sd.url, "steps": 4, "width": 64, "height": 64, "timeout_s": 20.0,
            "negative_prompt": "blurry"}


@pytest.fixture
async def simcord_bot(make_config, text_backend, embedder, pictures_config, request):
    from bot.app import create_bot

    marker = request.node.get_closest_marker("pictures")
    config = make_config(llm={"generation": {"max_new_tokens": 8}}, memory={"summarize_every": 0},
                         pictures={**pictures_config, **(marker.kwargs if marker else {})})
    bot = create_bot(config, text_model=text_backend, embed_model=embedder)
    yield bot
    if bot.services is not None:  # SimCord detaches the bot without closing it
        await bot.services.close()


async def table(env, premise="A tavern where Bram the dwarf drinks alone."):
    await env.bot.tree.sync()
    guild = env.create_guild("Guild")
    channel = guild.create_text_channel("tavern")
    alice = guild.add_member(env.create_user("alice"), nick="Bram")
    await alice.slash(channel, "dm start", premise=premise)
    return guild, channel, alice


def edits_of_original(env) -> list[str]:
    return [str((e.json or {}).get("content")) for e in env.http_requests
            if e.method == "PATCH" and e.path.endswith("/messages/@original")]


@pytest.mark.pictures(enabled=False)
async def test_pictures_off_says_how_to_turn_them_on(simcord_env):
    _, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture")
    text = result.response.content if result.response else result.followups[-1].content
    assert "pictures are off" in text.lower() and "[pictures]" in text and "enabled = true" in text
    assert result.ephemeral


async def test_a_picture_arrives_as_a_spoiler_with_progress_looks_and_focus(simcord_env, sd):
    _, channel, alice = await table(simcord_env)
    await alice.slash(channel, "dm look", name="Bram", description="stout dwarf, red braided beard")
    await alice.send(channel, "Bram raises his mug to the bard.")
    await alice.slash(channel, "dm continue")
    result = await alice.slash(channel, "dm picture", focus="the bard")
    final = result.response.message if result.response else result.followups[-1].message
    (attachment,) = final.attachments
    assert attachment.filename == "SPOILER_scene.png" and attachment.is_spoiler()
    prompt = sd.requests[-1]["prompt"]
    assert prompt.startswith("the bard, stout dwarf, red braided beard, ") and "Bram" not in prompt  # his look
    assert "tavern" in prompt and "." not in prompt and sd.requests[-1]["negative_prompt"] == "blurry"
    assert final.content.startswith("-# 🎨 Turn 1: the bard ") and "\n" not in final.content  # what was painted
    edits = edits_of_original(simcord_env)
    assert "🎨 Looking at the scene…" in edits and "🎨 Painting the scene…" in edits


async def test_the_caption_is_one_escaped_line_that_pings_nobody(simcord_env, sd):
    _, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture", focus="**@everyone** look at <@123>\n# _the bard_")
    final = result.response.message if result.response else result.followups[-1].message
    assert final.content == "-# 🎨 The opening scene: @\u200beveryone look at @123 \\_the bard\\_ in the tavern"
    assert sd.requests[-1]["prompt"].startswith("@everyone look at @123 _the bard_, tavern")
    assert not final.mention_everyone and not final.mentions
    patches = [e.json for e in simcord_env.http_requests
               if e.method == "PATCH" and e.json and e.json.get("content")]
    assert patches and all(j.get("allowed_mentions") == {"parse": []} for j in patches)


@pytest.mark.parametrize("failure, expected", [
    ({"mode": "500"}, "answered 500"),
    ({"mode": "not_image"}, "not an image"),
    ({"user": "painter", "password": "right"}, "refused the login"),
])
async def test_each_failure_has_its_message_and_the_story_goes_on(simcord_env, sd, failure, expected):
    for key, value in failure.items():
        setattr(sd, key, value)
    _, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture")
    text = result.response.content if result.response else result.followups[-1].content
    assert expected in text and "Traceback" not in text
    assert text.startswith("🎨 No picture this time: the picture server") and "Dungeon Master" not in text
    await alice.send(channel, "I order another ale.")
    after = await alice.slash(channel, "dm continue")
    assert after.response.content and "cannot" not in after.response.content


@pytest.mark.pictures(enabled=True, url="http://127.0.0.1:9", timeout_s=5.0)
async def test_a_server_that_is_down(simcord_env):
    _, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture")
    text = result.response.content if result.response else result.followups[-1].content
    assert "not reachable" in text


async def test_spoiler_off_and_a_fixed_seed_per_campaign(simcord_env, sd):
    guild, channel, alice = await table(simcord_env)
    gm_role = guild.create_role("GM", permissions=__import__("discord").Permissions(manage_guild=True))
    gm = guild.add_member(simcord_env.create_user("gm"), roles=[gm_role])
    await gm.slash(channel, "dm settings", name="picture_spoiler", value="false")
    await gm.slash(channel, "dm settings", name="picture_seed", value="777")
    result = await alice.slash(channel, "dm picture", focus="the tavern")
    final = result.response.message if result.response else result.followups[-1].message
    assert final.attachments[0].filename == "scene.png" and sd.requests[-1]["seed"] == 777


@pytest.mark.parametrize("expiry", ["the bot's own clock", "Discord answers Unknown Webhook"])
async def test_a_picture_after_the_token_expired_arrives_as_a_channel_message(simcord_env, sd, monkeypatch, expiry):
    import cogs.render

    _, channel, alice = await table(simcord_env)
    if expiry == "the bot's own clock":  # SimCord cannot advance its clock while a command works
        monkeypatch.setattr(cogs.render, "TOKEN_LIFETIME_S", 0)
    else:
        simcord_env.inject_error("PATCH", "/webhooks/*/*/messages/@original", status=404, code=10015,
                                 message="Unknown Webhook", times=None)
    await alice.slash(channel, "dm picture", focus="the bard")
    last = [m for m in channel.history() if m.author.id == simcord_env.bot.user.id][-1]
    assert last.interaction_metadata is None  # an ordinary message, not the interaction's reply
    (attachment,) = last.attachments
    assert attachment.filename == "SPOILER_scene.png"
    assert last.content.startswith("-# 🎨 The opening scene: the bard")
    assert not any(m.components for m in channel.history() if m.author.id == simcord_env.bot.user.id
                   and m.attachments)  # the Cancel button went with the progress
    await alice.send(channel, "I order another ale.")
    await alice.slash(channel, "dm continue")  # its narration, too, goes out as a channel message
    narration = [m for m in channel.history() if m.author.id == simcord_env.bot.user.id][-1]
    assert narration.id != last.id and narration.content and not narration.attachments


class PollsOnTheVirtualClock:
    """engine.pictures.client' `asyncio`, in which the wait for 'the picture or the next progress poll' is
    declared as outside input. Undeclared, SimCord fires that one-second timer by the wall clock, and
    only once every other bot task has settled, i.e. never while the txt2img request is in flight."""

    def __init__(self, env) -> None:
        self.env = env

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    async def wait(self, tasks, **options):
        return await self.env.external_wait(asyncio.wait(tasks, **options),
                                            reason="the picture or the next progress poll")


@pytest.fixture
def painting(simcord_env, monkeypatch) -> asyncio.Event:
    """txt2img and the wait between progress polls as declared outside input; the event is set when
    the server has answered txt2img. Tests that use it need `timeout_s` beyond the settle timeout:
    aiohttp's own timeout timer is no wake-up SimCord can put on the virtual clock, so a shorter one
    would hold every operation until it fires by the wall clock."""
    import engine.pictures.client
    from engine.pictures.client import PictureClient

    txt2img, answered = PictureClient.txt2img, asyncio.Event()

    async def declared_txt2img(self, *args, **kwargs):
        try:
            return await simcord_env.external_wait(txt2img(self, *args, **kwargs),
                                                   reason="AUTOMATIC1111 txt2img")
        finally:
            answered.set()

    monkeypatch.setattr(PictureClient, "txt2img", declared_txt2img)
    monkeypatch.setattr(engine.pictures.client, "asyncio", PollsOnTheVirtualClock(simcord_env))
    return answered


def buttons(response) -> list[str]:
    return [child.label for row in response.message.components for child in row.children]


async def until_answered(env, answered: asyncio.Event) -> None:
    await asyncio.wait_for(answered.wait(), 10)  # the server answers in its own thread, by the wall clock
    await env.settle()


@pytest.mark.pictures(timeout_s=600.0)
async def test_progress_edits_tick_with_the_clock_then_the_picture_arrives_as_a_spoiler(simcord_env, sd,
                                                                                        painting):
    sd.step_delay, sd.hold_at = 0.5, 2
    _, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture", focus="the tavern")
    assert await asyncio.to_thread(sd.held.wait, 10)  # half done, and it stays so
    assert result.response.content == "🎨 Painting the scene…" and buttons(result.response) == ["Cancel"]
    before = len(edits_of_original(simcord_env))

    await simcord_env.advance_time(1.0)
    progress = "🎨 Painting the scene… `▓▓▓▓▓▓░░░░░░` 50% · about 1 s left"  # step 2 of 4, 2 × 0.5 s to go
    assert edits_of_original(simcord_env)[before:] == [progress]
    assert [a.filename for a in result.response.attachments] == ["preview.png"]
    assert buttons(result.response) == ["Cancel"]
    await simcord_env.advance_time(1.0)
    assert len(edits_of_original(simcord_env)) == before + 2

    sd.release()
    await until_answered(simcord_env, painting)
    (attachment,) = result.response.attachments
    assert attachment.filename == "SPOILER_scene.png" and attachment.is_spoiler()
    assert result.response.content.startswith("-# 🎨 The opening scene: the tavern")
    assert buttons(result.response) == []
    assert sd.step == 4 and sd.interrupted == 0


@pytest.mark.pictures(timeout_s=600.0)
async def test_cancel_interrupts_the_painting_and_the_story_goes_on(simcord_env, sd, painting):
    sd.step_delay, sd.hold_at = 0.5, 2
    guild, channel, alice = await table(simcord_env)
    result = await alice.slash(channel, "dm picture")
    assert await asyncio.to_thread(sd.held.wait, 10)
    await simcord_env.advance_time(1.0)
    assert "50%" in result.response.content

    bob = guild.add_member(simcord_env.create_user("bob"))
    refused = await bob.click(result.response, label="Cancel")
    assert refused.response.ephemeral and "Only who asked" in refused.response.content
    assert sd.interrupted == 0 and buttons(result.response) == ["Cancel"]

    await alice.click(result.response, label="Cancel")
    assert sd.interrupted == 1 and result.response.content == "✋ Cancelling the picture…"
    assert buttons(result.response) == []
    await until_answered(simcord_env, painting)
    assert result.response.content == "✋ The picture was cancelled." and result.response.attachments == []
    assert sd.step == 2  # the server stopped where it was held, not at its last step
    settled = len(edits_of_original(simcord_env))
    await simcord_env.advance_time(5.0)
    assert len(edits_of_original(simcord_env)) == settled  # no progress poll after the end

    await alice.send(channel, "I order another ale.")
    after = await alice.slash(channel, "dm continue")
    assert after.response.content and "cannot" not in after.response.content
