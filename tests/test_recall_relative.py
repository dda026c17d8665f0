"""Recall compares each query against its own baseline (issue 23): a short everyday clause of the action is
alike to every ordinary turn, and must not fill the slots ahead of the clause that names what is asked for.
On the real MiniLM embedder over a real SQLite store."""
from __future__ import annotations

import numpy as np

from engine.memory.recall import relative_scores, turn_queries
from engine.records import Action

CODE = "The strongbox we took from the bandits opens with the code 3817."
PLANTED = [("Tobin", "My left knee was shattered at the siege of Dunmarrow, so I cannot climb."), ("Mira", CODE)]
ORDINARY = [
    "I sit on the riverbank and skip flat stones across the water.",
    "I brush the mud out of my cloak and hang it to dry by the hearth.",
    "I help a farmer unload sacks of barley from his wagon.",
    "I buy a bowl of hot porridge with honey from the market stall.",
    "I mend a torn strap on my pack with needle and thread.",
    "I chase a goose that has wandered into the common room.",
    "I play a round of knucklebones with the stable hands and win a copper.",
    "I drink a mug of mulled ale and warm my hands on it.",
    "I sweep the snow off the inn's front steps.",
    "I warm my feet by the fire and tell a story about my grandfather.",
    "I follow a set of fox tracks into the birch wood and back.",
    "I polish my helmet until it shines.",
]
PROBE = "I kneel by the iron chest and try to open its lock with the digits we were given."


async def test_an_everyday_clause_does_not_crowd_out_the_clause_that_names_the_fact(store, bank):
    campaign = await store.create_campaign(1, "Ashford")
    for author, text in PLANTED + [("Dagny", t) for t in ORDINARY]:
        act = await store.add_action(campaign.id, 7, author, text)
        await store.commit_turn(campaign.id, [act.id], "", await bank.turn_entries([act], ""))
    queries = turn_queries([Action(0, campaign.id, 8, "Mira", PROBE, 0.0, None)], "", [], bank.chunk)
    probe = await bank.probe(campaign.id, queries)
    # compared raw, "I kneel by the iron chest" finds the knee and the ordinary turns first: the code is not
    # among the best five
    actions = [m for m in await store.memories(campaign.id) if m.speaker]
    raw = (np.stack([m.vector for m in actions]) @ probe.vectors.T).max(axis=1)
    assert CODE not in [actions[i].text for i in np.argsort(-raw)[:5]]
    found = await bank.search(campaign.id, probe, top_k=5, min_score=0.25, recent_from_turn=None)
    assert CODE in [r.memory.text for r in found], [r.memory.text for r in found]


async def test_the_mean_vector_follows_every_change_of_the_store(store, bank):
    campaign = await store.create_campaign(1, "Means")
    assert bank.mean_vector(campaign.id) is None
    for text in ORDINARY[:4]:
        act = await store.add_action(campaign.id, 7, "Ann", text)
        await store.commit_turn(campaign.id, [act.id], "The day goes on.", await bank.turn_entries([act], "The day goes on."))
    await bank.recall(campaign.id, "a query", top_k=3, min_score=0.0)  # reads the index: its mean from here on
    await bank.pin(campaign.id, "Ann is a ranger.")
    await store.undo_last_turn(campaign.id)
    kept = await store.memories(campaign.id)
    assert np.allclose(bank.mean_vector(campaign.id), np.mean([m.vector for m in kept], axis=0), atol=1e-5)


def test_relative_scores_subtract_each_querys_own_baseline():
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert np.allclose(relative_scores(vectors, queries, None), [1.0, 0.8])
    # the first query is alike to everything (baseline 0.9), the second to little (0.1): the second entry,
    # what only the second query singles out, now comes first
    assert np.allclose(relative_scores(vectors, queries, np.array([0.9, 0.1], np.float32)), [0.1, 0.7])
