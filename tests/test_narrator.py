"""The turn pipeline end to end on the real bundled models, a real SQLite file and the real runner."""
from __future__ import annotations

import asyncio

import pytest

from engine.errors import BadInput
from engine.jobs.job import Job


async def turn(services, campaign, kind="turn", **payload):
    handle = services.runner.submit(Job(campaign.id, campaign.channel_id, kind, payload=payload))
    seen = [text async for text in handle.updates()]
    return handle, seen, await asyncio.wait_for(handle.result(), 120)


async def wait_until(predicate, timeout=60.0):
    async def poll():
        while not await predicate():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


def record_prompts(services):
    """Keep every prompt the engine sends to the model (the backend still does the work)."""
    backend, prompts = services.backend, []
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):
        prompts.extend(r.text for r in requests)
        return original(requests, on_token, should_stop)

    backend.generate_batch = recording
    return prompts, lambda: setattr(backend, "generate_batch", original)


async def test_whole_turn_consumes_actions_streams_and_remembers_word_for_word(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(10, "tavern", "A tavern at the edge of the Murk.")
    await edits.add_action(campaign.id, 1, "Bram", "I pay the smith Tolda the 30 gold coins I owe her.")
    await edits.add_action(campaign.id, 2, "Ilsa", "I ask the innkeeper for the cellar password.")
    prompts, restore = record_prompts(services)
    try:
        handle, seen, result = await turn(services, campaign)
    finally:
        restore()
    assert result.turn.number == 1 and [a.author_name for a in result.turn.actions] == ["Bram", "Ilsa"]
    assert result.turn.narration and len(seen) >= 2  # the text arrived in pieces
    assert await store.pending_actions(campaign.id) == []
    # Both actions, labelled with the players' names, reached the model in order.
    prompt = prompts[0]
    assert prompt.index("Bram: I pay the smith Tolda") < prompt.index("Ilsa: I ask the innkeeper")
    assert "A tavern at the edge of the Murk." in prompt
    shown = [m.shown for m in await store.memories(campaign.id)]
    assert "Bram: I pay the smith Tolda the 30 gold coins I owe her." in shown
    assert result.prompt_tokens == services.backend.count_tokens(prompt)


async def test_recall_brings_an_old_fact_back_into_the_prompt(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(11, "vault", settings={"summarize_every": 0})
    await edits.add_action(campaign.id, 1, "Bram", "I whisper the vault password to Ilsa: it is 'blue heron'.")
    await turn(services, campaign)
    for i in range(3):
        await edits.add_action(campaign.id, 1, "Bram", f"I walk along the river, step {i}.")
        await turn(services, campaign)
    await edits.add_action(campaign.id, 2, "Ilsa", "What was the vault password again?")
    prompts, restore = record_prompts(services)
    services.narrator.settings = type(services.narrator.settings)(
        **{**services.narrator.settings.__dict__, "recent_turns": 2})  # turn 1 is outside the recent story
    try:
        _, _, result = await turn(services, campaign)
    finally:
        restore()
    recalled = [r.memory.text for r in result.recalled]
    assert any("blue heron" in text for text in recalled), recalled
    assert "Things to remember:" in prompts[0] and "blue heron" in prompts[0]


@pytest.mark.config(memory={"summarize_every": 2})
async def test_every_n_turns_the_story_is_summarised_into_a_memory(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(12, "summary", "A caravan crosses the desert.")
    for text in ("I lead the camels to the oasis.", "I trade salt for water with the nomads."):
        await edits.add_action(campaign.id, 1, "Bram", text)
        await turn(services, campaign)

    async def summarised():
        return await store.last_summary_turn(campaign.id) == 2

    await wait_until(summarised)
    (summary,) = [m for m in await store.memories(campaign.id) if m.kind == "summary"]
    assert (summary.turn_from, summary.turn_to) == (1, 2) and summary.text and summary.vector is not None


async def test_retry_replaces_the_narration_and_undo_returns_actions(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(13, "retry", "A haunted mill.", settings={"do_sample": True})
    await edits.add_action(campaign.id, 1, "Bram", "I open the mill's creaking door.")
    _, _, first = await turn(services, campaign)
    _, _, again = await turn(services, campaign, "retry")
    assert again.turn.id == first.turn.id and again.turn.number == 1
    assert (await store.last_turn(campaign.id)).narration == again.turn.narration
    exact = [m for m in await store.memories(campaign.id) if m.kind == "exact"]
    assert any(again.turn.narration.startswith(m.text[:20]) for m in exact)
    _, _, undone = await turn(services, campaign, "undo")
    assert undone.number == 1
    assert [a.text for a in await store.pending_actions(campaign.id)] == ["I open the mill's creaking door."]
    assert await store.memory_count(campaign.id) == 0 and await store.turn_count(campaign.id) == 0


async def test_bad_input_is_refused_with_a_message_and_loses_nothing(services):
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(14, "empty")
    for blank in ("", "   \n\t", "\u200b\u200d\ufeff", "\u2060 \u200e\x00"):  # zero-width and control characters
        with pytest.raises(BadInput, match="empty action"):
            await edits.add_action(campaign.id, 1, "Bram", blank)
    with pytest.raises(BadInput, match="nothing to narrate"):
        await turn(services, campaign)
    with pytest.raises(BadInput, match="nothing to retry|no narration"):
        await turn(services, campaign, "retry")
    long_action = "I shout " + "very " * 400 + "loudly."
    action, note = await edits.add_action(campaign.id, 1, "Bram", long_action)
    assert note and "cut to 1000" in note and len(action.text) <= 1002 and action.text.endswith("…")
    await store.update_campaign(campaign.id, settings={"temperature": "hot"})
    with pytest.raises(BadInput, match="temperature"):
        await turn(services, campaign)
    assert [a.id for a in await store.pending_actions(campaign.id)] == [action.id]  # still there


async def test_a_configured_summarization_model_writes_the_summaries(make_config, text_backend, embedder, tmp_path):
    """memory.summarizer names a transformers summarization model (a tiny BART here, as the seed's BART)."""
    from tinymodels import tiny_bart

    from bot.services import build_services

    folder = tiny_bart(tmp_path / "bart")
    config = make_config(memory={"summarizer": str(folder), "summarize_every": 1, "summary_max_tokens": 16},
                         llm={"generation": {"max_new_tokens": 6}})
    services = await build_services(config, text_model=text_backend, embed_model=embedder)
    try:
        assert services.summarizer is not None and services.summarizer.available
        summarised: list[str] = []
        original = services.summarizer.model.summarize
        services.summarizer.model.summarize = lambda text: summarised.append(text) or original(text)
        campaign = await services.store.create_campaign(15, "bart", "A ferry across the grey lake.")
        await services.edits.add_action(campaign.id, 1, "Bram", "I pay the ferryman two copper coins.")
        await turn(services, campaign)

        async def summarised_turn_one():
            return await services.store.last_summary_turn(campaign.id) == 1

        await wait_until(summarised_turn_one)
        assert summarised and "Bram: I pay the ferryman two copper coins." in summarised[0]
    finally:
        await services.close()


async def test_six_longest_actions_never_lock_the_table(services):
    """Six 1,000-character actions need ~1,935 tokens: at the default budget (1,848) every turn used
    to be refused for good. Now the oldest that fit in half the budget are narrated, the rest wait."""
    store, edits = services.store, services.edits
    campaign = await store.create_campaign(16, "crowded", "A crowded hall.",
                                           settings={"max_new_tokens": 8, "do_sample": False})
    long_text = "I tell the whole hall the story of my grandmother's farm, " + "and the geese and the goats " * 40
    added = [(await edits.add_action(campaign.id, i, f"P{i}", f"{i}: {long_text}"))[0] for i in range(6)]
    assert all(len(a.text) >= 990 for a in added)
    _, _, result = await turn(services, campaign)
    taken = [a.id for a in result.turn.actions]
    assert 1 <= len(taken) < 6 and taken == [a.id for a in added[: len(taken)]]  # the oldest first
    pending = [a.id for a in await store.pending_actions(campaign.id)]
    assert pending == [a.id for a in added[len(taken):]]  # the rest wait, nothing lost
    assert any("wait for the next one" in note for note in result.notes)
    while await store.pending_actions(campaign.id):  # every one is narrated in the turns after
        await turn(services, campaign)
    assert sum(len(t.actions) for t in await store.recent_turns(campaign.id, 10)) == 6
