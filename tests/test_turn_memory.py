"""What a turn's prompt holds from memory, through the real pipeline (bundled models, SQLite, runner):
the window and recall agree on every turn, repeats are stored once, and the turn says what it recalled."""
from __future__ import annotations

import asyncio

import pytest

from engine.jobs.job import Job

FACT = "I bury my mother's silver locket under the split oak behind the Oxbow Mill."
PROBE = "I go back to dig up the keepsake I hid in the ground."
WEATHER = ["The wind turns cold", "Clouds gather over the hills", "A cart rattles past the gate",
           "Somewhere a dog barks twice", "The bell of the chapel rings", "Smoke rises from the chimneys"]


def long_narration(n: int) -> str:
    """About 130 tokens of story that has nothing to do with the fact."""
    return " ".join(f"{WEATHER[(n + k) % len(WEATHER)]} while the travellers rest on day {n}, hour {k}."
                    for k in range(9))


async def turn(services, campaign, kind="turn"):
    handle = services.runner.submit(Job(campaign.id, campaign.channel_id, kind))
    return await asyncio.wait_for(handle.result(), 120)


async def commit(services, campaign, author, action, narration):
    act = await services.store.add_action(campaign.id, 7, author, action)
    entries = await services.memory.turn_entries([act], narration)
    return (await services.store.commit_turn(campaign.id, [act.id], narration, entries))[0]


@pytest.mark.config(llm={"context_tokens": 700}, memory={"recent_turns": 6, "summarize_every": 0})
async def test_a_fact_in_a_turn_the_budget_dropped_from_the_window_is_recalled(services):
    campaign = await services.store.create_campaign(30, "mill", "A mill town at the edge of the Murk.")
    await commit(services, campaign, "Ilsa", FACT, long_narration(1))
    for n in range(2, 7):  # six recent turns: all offered to the window, but only some fit the budget
        await commit(services, campaign, "Kel", f"I walk through the town, street {n}.", long_narration(n))
    await services.edits.add_action(campaign.id, 8, "Ilsa", PROBE)
    result = await turn(services, campaign)
    remembered = result.memory
    assert remembered.offered == (1, 2, 3, 4, 5, 6)
    assert 1 not in remembered.window and remembered.window == tuple(range(7 - len(remembered.window), 7))
    assert result.turns_in_prompt == len(remembered.window) >= 1
    # turn 1 did not fit, so recall may bring it back: the fact is in the prompt by memory
    assert [e for e in remembered.recalled if e.text == f"Ilsa: {FACT}" and e.turn_from == 1]
    # ...and nothing the window holds is recalled again
    assert all(e.turn_from is None or e.turn_from < remembered.window[0] for e in remembered.recalled)
    assert remembered.prompt_tokens <= remembered.budget == 700 - 8
    again = await services.edits.last_memory(campaign.id)
    assert again == (result.turn.number, remembered)  # kept with the turn, for /dm memory last


async def test_the_last_turn_tells_what_it_remembered_and_a_retry_tells_anew(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(31, "harbour", "A storm-wracked harbour town.")
    assert await edits.last_memory(campaign.id) is None
    pinned, _ = await edits.pin_fact(campaign, "Cira's god is Vhal, the drowned one.")
    await commit(services, campaign, "Bram", "I name my ship the Marigold.", "Gulls circle the mast.")
    await edits.add_action(campaign.id, 9, "Bram", "I ask whether the Marigold is ready to sail.")
    result = await turn(services, campaign)
    number, remembered = await edits.last_memory(campaign.id)
    assert number == result.turn.number == 2 and remembered == result.memory
    assert [e.id for e in remembered.pinned] == [pinned.id] and remembered.window == (1,)
    assert remembered.recalled == ()  # turn 1 is in the window: not recalled a second time
    lines = remembered.lines(number)
    assert lines[0].startswith("Turn 2's prompt:") and f"#{pinned.id}" in lines[2]
    assert "Recent story: turn 1" in lines[-1]
    retried = await turn(services, campaign, "retry")
    assert (await edits.last_memory(campaign.id)) == (2, retried.memory)


async def test_a_narration_the_model_repeats_is_remembered_once(services):
    store = services.store
    campaign = await store.create_campaign(32, "echo", "A quiet inn.")
    for n in range(4):
        await commit(services, campaign, "Ann", f"I wait for the courier, hour {n}.", "The fire crackles softly.")
    narrations = [m for m in await store.memories(campaign.id) if m.speaker is None]
    assert [m.text for m in narrations] == ["The fire crackles softly."] and narrations[0].turn_from == 1


@pytest.mark.config(llm={"context_tokens": 400}, memory={"summarize_every": 3, "summary_max_tokens": 16})
async def test_no_model_call_ever_exceeds_the_context_summaries_included(services):
    """Three turns of five long actions: the summary prompt was the whole story, uncut (4,626 tokens in
    a plain repro). Now the story is summarised in pieces that fit, and the guard checks every call."""
    store, edits, backend = services.store, services.edits, services.backend
    sent: list[tuple[str, int]] = []
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):
        sent.extend((r.text, r.settings.max_new_tokens) for r in requests)
        return original(requests, on_token, should_stop)

    backend.generate_batch = recording
    campaign = await store.create_campaign(33, "long", "A long night.", settings={"do_sample": False})
    story = "I tell of the war in the north, of the burning towns and the long march home through snow. "
    for p in range(3):  # three turns, each action about 230 tokens: the three of them no summary prompt holds
        await edits.add_action(campaign.id, p, f"P{p}", f"Part {p}: {story * 10}"[:1000])
        while await store.pending_actions(campaign.id):
            await turn(services, campaign)

    async def summarised():
        return await store.last_summary_turn(campaign.id) >= 3
    await asyncio.wait_for(_until(summarised), 120)
    backend.generate_batch = original
    assert sent and all(backend.count_tokens(text) + new <= 400 for text, new in sent)
    summaries = [m for m in await store.memories(campaign.id) if m.kind == "summary"]
    assert len(summaries) >= 2  # the story did not fit one summary prompt: it went in pieces
    spans = sorted((m.turn_from, m.turn_to) for m in summaries)
    assert spans[0][0] == 1 and all(a[1] < b[0] for a, b in zip(spans, spans[1:])), spans  # in order, no overlap
    assert services.runner.guard.largest <= 400


async def _until(predicate):
    while not await predicate():
        await asyncio.sleep(0.05)
