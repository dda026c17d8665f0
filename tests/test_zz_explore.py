import sys, time
sys.path.insert(0, "/work/main/tests")
import pytest, discord

@pytest.fixture
def simcord_bot(make_config, text_backend, embedder):
    from bot.app import create_bot
    cfg = make_config(llm={"generation": {"max_new_tokens": 8}}, memory={"summarize_every": 0}, discord={"admin_role": "Game Master"})
    return create_bot(cfg, text_model=text_backend, embed_model=embedder)

@pytest.mark.simcord(settle_timeout=120)
async def test_explore(simcord_env):
    env = simcord_env
    await env.bot.tree.sync()
    guild = env.create_guild("Tavern")
    gm_role = guild.create_role("Game Master")
    chan = guild.create_text_channel("table")
    alice = guild.add_member(env.create_user("alice"), nick="Aria")
    gm = guild.add_member(env.create_user("gm"), roles=[gm_role])
    r = await gm.slash(chan, "dm start", premise="A dark cave")
    print("START", r, r.deferred, r.response and r.response.content, r.followups)
    t = time.perf_counter()
    m = await alice.send(chan, "I light a torch")
    print("send took", time.perf_counter() - t)
    print("REACT", chan.history()[-1].reactions, chan.history()[-1].author)
    try:
        m2 = await alice.send(chan, "", attachments=[("a.txt", b"hi")])
        print("empty ok", m2.content, m2.attachments)
    except Exception as e:
        print("empty err", repr(e))
    t = time.perf_counter()
    r = await alice.slash(chan, "dm continue")
    print("continue took", time.perf_counter() - t, r, r.response.content)
    r = await alice.slash(chan, "dm end")
    print("END", r, r.ephemeral, r.response and (r.response.content, r.response.ephemeral), r.followups)
    th = env.backend.create_thread(chan.id, "side", alice.id)
    print("thread", th)
    for e in env.http_requests:
        print(e.method, e.path, str(e.json)[:150])
    print(env.transcript()[-3000:])
    me = alice.member
    print("member", me)
