"""/dm picture through SimCord against a real AUTOMATIC1111-like server on loopback (in its own thread).

Progress edits, Cancel and the picture timeout depend on timers, which SimCord runs on a virtual clock
that only moves between operations; those are tested against the same server in test_pictures.py.
"""
from __future__ import annotations

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
                         pictures=(marker.kwargs if marker else pictures_config))
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


async def test_a_picture_arrives_as_a_spoiler_with_progress_looks_and_focus(simcord_env, sd):
    sd.step_delay = 0.6  # long enough for progress edits at about one per second
    _, channel, alice = await table(simcord_env)
    await alice.slash(channel, "dm look", name="Bram", description="stout dwarf, red braided beard")
    await alice.send(channel, "Bram raises his mug to the bard.")
    await alice.slash(channel, "dm continue")
    result = await alice.slash(channel, "dm picture", focus="the bard")
    final = result.response.message if result.response else result.followups[-1].message
    (attachment,) = final.attachments
    assert attachment.filename == "SPOILER_scene.png" and attachment.is_spoiler()
    prompt = sd.requests[-1]["prompt"]
    assert prompt.startswith("the bard") and "Bram: stout dwarf, red braided beard" in prompt
    assert sd.requests[-1]["negative_prompt"] == "blurry" and prompt[:40] in final.content
    edits = edits_of_original(simcord_env)
    assert "🎨 Looking at the scene…" in edits and "🎨 Painting the scene…" in edits


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
