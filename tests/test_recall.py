"""Hybrid recall on the real MiniLM embedder over a real SQLite store: words beside meaning, one slot per
thing said, queries per action, and the index and FTS5 kept in step with every change."""
from __future__ import annotations

import numpy as np
import pytest

from engine.memory.recall import (WORDS_BONUS, Query, content_words, distinctive_words, rare_words, turn_queries,
                           word_bonus)
from engine.records import Action, Turn
from engine.memory import vector_index
from engine.memory.vector_index import VectorIndex


async def play(store, bank, campaign_id, author, text, narration):
    act = await store.add_action(campaign_id, 7, author, text)
    turn, added = await store.commit_turn(campaign_id, [act.id], narration, await bank.turn_entries([act], narration))
    return turn, added


async def test_a_repeated_narration_is_stored_once_and_never_takes_two_slots(store, bank):
    campaign = await store.create_campaign(1, "Echoes")
    await play(store, bank, campaign.id, "Ann", "I hide the key under the blue stone by the well.", "Nobody sees you.")
    repeated = "The rain drums on the roof of the tavern while the fire crackles."
    near = ["The rain drums on the roof of the tavern, and the fire crackles.",
            "Rain drums on the tavern roof while the fire crackles softly."]
    for i in range(12):  # a small model repeating itself, word for word and nearly so
        await play(store, bank, campaign.id, "Bram", f"I wait by the fire for hour {i}.", repeated)
    for text in near:
        await play(store, bank, campaign.id, "Bram", "I keep waiting.", text)
    narrations = [m for m in await store.memories(campaign.id) if m.speaker is None]
    assert [m.text for m in narrations].count(repeated) == 1 and len(narrations) == 4
    found = await bank.recall(campaign.id, "Does the rain still drum on the tavern roof by the fire?", top_k=3,
                              min_score=0.0)
    rainy = [r for r in found if "rain" in r.memory.text.lower()]
    assert len(rainy) == 1, [r.memory.text for r in found]  # one slot for what is said three times
    assert len(found) == 3  # the other slots went to other entries


async def test_a_rare_name_is_found_by_words_where_the_vectors_miss_it(store, bank, embedder):
    campaign = await store.create_campaign(1, "Harbour")
    target = "Bram paid for the Marigold with his last coins."
    distractors = ["Our boat is ready to sail at dawn.", "The vessel is ready to sail from the harbour.",
                   "Ships are ready to sail when the tide turns.", "The fishing boats are ready to leave port.",
                   "The sloop is rigged and ready for the sea."]
    for text in [target, *distractors]:
        await play(store, bank, campaign.id, "Kel", "I look at the harbour.", text)
    question = "Is the Marigold ready to sail?"
    # by meaning alone the target is not among the best two: the name is all it shares with the question
    narrations = [m for m in await store.memories(campaign.id) if m.speaker is None]
    scores = [float(m.vector @ embedder.encode([question])[0]) for m in narrations]
    by_meaning = [narrations[i].text for i in np.argsort(scores)[::-1][:2]]
    assert target not in by_meaning
    found = await bank.recall(campaign.id, question, top_k=2, min_score=0.0)
    assert target in [r.memory.text for r in found]
    hit = next(r for r in found if r.memory.text == target)
    assert hit.words == ("marigold",)
    # and even when no entry is similar enough by meaning, the word still brings it
    strict = await bank.recall(campaign.id, question, top_k=2, min_score=0.99)
    assert [r.memory.text for r in strict] == [target]


def test_common_words_do_not_count_as_rare():
    words = content_words("I ask the harbourmaster whether the Marigold is ready, at 417 paces!")
    assert words == ["harbourmaster", "whether", "marigold", "ready", "417", "paces"]
    counts = {"harbourmaster": 2, "whether": 90, "marigold": 1, "ready": 400, "417": 1}
    # "paces" is in no entry; "ready" is in 40% of them; "whether" in 9% (more than 5%)
    assert rare_words(words, counts, entries=1000) == ["marigold", "417", "harbourmaster"]


def test_distinctive_words_are_names_numbers_and_words_outside_everyday_vocabulary(embedder):
    common = embedder.common_words()
    assert {"horse", "name", "ready", "whisper"} <= common and "marigold" not in common
    text = "Horses wait. I ask the harbourmaster whether Raven, my horse, is ready to sail the Marigold 417 paces."
    # "Horses" opens a sentence (not a name); "Raven" is an everyday word but written as a name
    assert distinctive_words(text, common) == ["harbourmaster", "raven", "marigold", "417"]
    assert distinctive_words(text, None) == ["raven", "marigold", "417"]  # no vocabulary: names and numbers


def action(author: str, text: str) -> Action:
    return Action(1, 1, 7, author, text, 0.0, None)


def test_each_action_is_its_own_query_and_the_narration_tail_a_weaker_one():
    turn = Turn(1, 1, 1, "x" * 1000 + " and the wind howls over the moor.", (), 0.0)
    queries = turn_queries([action("Ann", "I ask for the password."), action("Bram", "I sharpen my axe.")],
                           "the guard answers", [turn], lambda text: [text] if text.strip() else [])
    assert [q.text for q in queries[:3]] == ["I ask for the password.", "I sharpen my axe.", "the guard answers"]
    assert all(q.weight == 1.0 for q in queries[:3])
    assert queries[3].text.endswith("howls over the moor.") and len(queries[3].text) <= 300
    assert queries[3].weight < 1.0
    assert all("Ann" not in q.text and "Bram" not in q.text for q in queries)  # names are not queried
    alone = turn_queries([], "", [turn], lambda text: [text] if text.strip() else [])
    assert len(alone) == 1 and alone[0].weight == 1.0  # a bare /dm continue: the tail is all there is


async def test_an_action_finds_its_fact_when_the_last_narration_is_long_and_unrelated(store, bank):
    campaign = await store.create_campaign(1, "Crowded")
    await play(store, bank, campaign.id, "Ilsa", "I whisper that the vault password is copper wren.", "The lamp gutters.")
    tail = ("The storm rolls over the market square, tearing awnings from the stalls and scattering apples, "
            "fish and bolts of cloth across the wet cobbles while merchants shout, children run for cover and "
            "the bells of the harbour tower ring out over the crashing waves and the howling wind.")
    for i in range(20):
        await play(store, bank, campaign.id, "Kel", f"I run through the storm, street {i}.",
                   tail.replace("apples", f"apples ({i})"))
    action_text = "At the heavy door I speak the secret word I was told."  # no word in common with the fact
    (last,) = await store.recent_turns(campaign.id, 1)
    queries = turn_queries([action("Ilsa", action_text)], "", [last], bank.chunk)
    found = await bank.recall(campaign.id, queries, top_k=3, min_score=0.25, recent_from_turn=last.number)
    assert "copper wren" in found[0].memory.text, [r.memory.text for r in found]
    # The old query, the action and the tail of the narration as one text, lost it among the storm.
    mixed = await bank.recall(campaign.id, f"Ilsa: {action_text}\n{last.narration[-300:]}", top_k=3, min_score=0.25,
                              recent_from_turn=last.number)
    assert all("copper wren" not in r.memory.text for r in mixed)


async def test_the_index_and_the_words_follow_every_change_in_place(store, bank):
    campaign = await store.create_campaign(1, "Changes")

    async def in_step() -> VectorIndex:
        index = bank._index[campaign.id]
        ids, _, keys = await store.memory_vectors(campaign.id, bank.embedder_id)
        assert sorted(index._row) == ids and [index.key(i) for i in ids] == keys
        for memory in await store.memories(campaign.id):  # every entry is found by its words, and only those
            words = content_words(memory.text)[:1]
            assert memory.id in [i for i, _ in await store.search_words(campaign.id, words, 100)]
        return index

    turn, _ = await play(store, bank, campaign.id, "Ann", "The Marigold sails at dawn.", "Gulls cry over the water.")
    await bank.recall(campaign.id, "the ship", top_k=3, min_score=0.0)  # loads the index
    index = await in_step()
    turn2, _ = await play(store, bank, campaign.id, "Bram", "I pay the ferryman Osk two silver.", "He nods.")
    assert bank._index[campaign.id] is index and len(index) == 4  # added in place, not rebuilt
    await in_step()
    entries = await bank.turn_entries(turn2.actions, "Osk spits into the river.")
    await store.replace_narration(turn2.id, "Osk spits into the river.", entries)  # a retry
    assert await store.search_words(campaign.id, ["nods"], 10) == []
    await in_step()
    pinned = await bank.pin(campaign.id, "Vhal is the drowned god.")
    found = await bank.recall(campaign.id, "Who is Vhal?", top_k=3, min_score=0.0)
    assert found[0].memory.id == pinned.id and pinned.id not in [r.memory.id for r in found[1:]]
    await in_step()
    await store.undo_last_turn(campaign.id)
    assert await store.search_words(campaign.id, ["osk"], 10) == []
    assert all("Osk" not in r.memory.text for r in await bank.recall(campaign.id, "Osk", top_k=5, min_score=-1))
    await in_step()
    marigold = next(m for m in await store.memories(campaign.id) if "Marigold" in m.text)
    assert await store.delete_memory(campaign.id, marigold.id)  # /dm memory forget
    assert await store.search_words(campaign.id, ["marigold"], 10) == []
    await in_step()
    assert await store.reset_memory(campaign.id, keep_pinned=True) == 1
    assert bank._index[campaign.id] is index and len(index) == 1
    await in_step()
    assert [r.memory.id for r in await bank.recall(campaign.id, "gulls", top_k=3, min_score=-1)] == [pinned.id]


def test_the_vector_index_grows_removes_and_compacts():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    index = VectorIndex(list(range(10)), vectors[:10], list(range(10)))
    for i in range(10, 200):
        assert index.add(i, vectors[i], i)
    assert not index.add(999, np.zeros(4, np.float32), 1)  # another size: refused, the caller rebuilds
    index.remove(list(range(0, 150)))
    assert len(index) == 50 and 10 not in index and index.key(160) == 160
    ids, best = index.best(vectors[[160, 199]], skip_from=199, count=64)
    assert set(ids) == set(range(150, 199))  # 199 is at the skip line
    assert ids[0] == 160 and best[0] == pytest.approx(float(vectors[160] @ vectors[160]), rel=1e-5)
    expected = np.maximum(vectors[ids] @ vectors[160], vectors[ids] @ vectors[199])
    # float32 products in another order (torch, numpy): an absolute tolerance too, for scores near 0
    assert np.allclose(best, expected, rtol=1e-5, atol=1e-5) and np.all(np.diff(best) <= 0)
    assert list(index.best(vectors[[160, 199]], skip_from=199, count=5)[0]) == list(ids[:5])
    assert np.array_equal(index.vector(170), vectors[170])


def test_the_int8_rows_find_the_same_best_entries_as_float32_and_score_them_exactly(monkeypatch):
    """Clustered vectors like a campaign's (many near one another): every row scored on its int8 sketch
    (projected on fitted directions: from 1,000 rows here), the best on float32; the top entries and their
    scores are those of a float32 search, through adds, removals, growth and the refit that comes with it."""
    monkeypatch.setattr(vector_index, "FIT_ROWS", 1000)
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, 384)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, 6000)] + 0.35 * rng.standard_normal((6000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(list(range(3000)), vectors[:3000], list(range(3000)))
    fitted = index._basis
    assert fitted is not None and fitted.shape == (384, vector_index.SKETCH_DIMS)
    for i in range(3000, 6000):
        index.add(i, vectors[i], i)
    assert index._basis is not fitted  # the matrix doubled: the directions were fitted again
    index.remove(list(range(0, 6000, 7)))
    alive = np.array([i for i in range(6000) if i % 7])
    for trial in range(20):
        queries = vectors[rng.integers(0, 6000, 3)] + 0.2 * rng.standard_normal((3, 384)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        queries[2] *= 0.7  # a weaker query (the narration's tail), as recall weights it
        ids, best = index.best(queries, skip_from=5500, count=64)
        kept = alive[alive < 5500]
        truth = (vectors[kept] @ queries.T).max(axis=1)
        assert list(ids[:28]) == list(kept[np.argsort(-truth)[:28]]), trial
        assert np.allclose(best[:28], np.sort(truth)[::-1][:28], atol=1e-5)
        assert list(index.best(queries, skip_from=5500, count=64, exact=True)[0][:28]) == list(ids[:28])
    hidden_but_few = index.best(queries, skip_from=3, count=64)[0]  # 3 visible rows (0 was removed)
    assert sorted(hidden_but_few) == [1, 2]
    assert np.allclose(index.exact_scores(index.rows([1, 2]), queries), (vectors[[1, 2]] @ queries.T).max(axis=1),
                       atol=1e-5)


async def test_a_weak_query_counts_less_and_words_take_at_most_half_the_slots(store, bank):
    campaign = await store.create_campaign(1, "Weights")
    for n in range(4):
        await play(store, bank, campaign.id, "Kel", f"I polish the Zephyrine's brass bell, number {n}.", f"Tick {n}.")
    for n in range(50):  # the name is rare among a hundred entries
        await play(store, bank, campaign.id, "Bram", f"I count barrel {n} in the hold.", f"Barrel {n} is full of salt.")
    await play(store, bank, campaign.id, "Ann", "The vault password is copper wren.", "Silence.")
    await play(store, bank, campaign.id, "Ann", "The guards change at midnight by the vault.", "Silence falls.")
    found = await bank.recall(campaign.id, [Query("I ask about the Zephyrine and the vault password.")], top_k=5,
                              min_score=0.0)
    by_words = [r for r in found if "zephyrine" in r.words]
    assert len(by_words) == 3  # five slots: three at most for the name, the others for meaning
    assert any("copper wren" in r.memory.text for r in found)
    tail = Query("I ask about the vault password.", weight=0.3, in_prompt=True)
    weak = await bank.recall(campaign.id, [Query("I polish the bell."), tail], top_k=1, min_score=0.0)
    assert "bell" in weak[0].memory.text  # the strong query's best wins over the weak one's
    assert word_bonus([(1, 8.0), (2, 3.0), (3, 4.0)]) == {1: WORDS_BONUS, 3: WORDS_BONUS / 2}


async def test_the_clause_that_matters_finds_its_fact_where_the_whole_sentence_blurs_it(store, bank):
    campaign = await store.create_campaign(1, "Saltmere")
    fact = "I name my ship the Marigold and paint the name on her bow in gold letters."
    others = ["I walk down to the docks and watch the fishermen mend their nets.",
              "I ask a fisherman where the best oysters are sold.",
              "I trade a song for a bowl of fish soup at the harbour kitchen.",
              "I eat a plate of fried eels and wash it down with ale.",
              "I ask the innkeeper what news has come from the capital this week."]
    for text in [fact, *others]:
        await play(store, bank, campaign.id, "Bram", text, "")
    probe = action("Bram", "I ask the harbourmaster whether my vessel is ready to sail.")
    queries = turn_queries([probe], "", [], bank.chunk)
    assert [q.text for q in queries[1:]] == ["I ask the harbourmaster", "my vessel is ready to sail."]
    assert not any(q.by_words for q in queries[1:])  # the whole action searches its words already
    whole = await bank.recall(campaign.id, queries[:1], top_k=3, min_score=0.0)
    assert fact not in [r.memory.text for r in whole]  # the sentence as one embedding: the docks win
    found = await bank.recall(campaign.id, queries, top_k=3, min_score=0.0)
    assert fact in [r.memory.text for r in found], [r.memory.text for r in found]


async def test_what_a_player_calls_theirs_is_looked_for_first_among_their_own_entries(store, bank):
    campaign = await store.create_campaign(1, "Saltmere")
    await play(store, bank, campaign.id, "Bram", "I name my ship the Marigold and paint the name on her bow.", "")
    await play(store, bank, campaign.id, "Kel", "I ask a fisherman where the best oysters are sold.", "")
    asked = "I ask the harbourmaster whether my vessel is ready to sail."

    async def first(author: str) -> str:
        found = await bank.recall(campaign.id, turn_queries([action(author, asked)], "", [], bank.chunk), top_k=1,
                                  min_score=0.0)
        return found[0].memory.text

    assert "Marigold" in await first("Bram")  # "my vessel", said by the one who named his ship
    assert "oysters" in await first("Kel")  # the same words from another player: likeness alone decides
