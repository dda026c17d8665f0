"""Memory: chunking, and recall with the real MiniLM embedder in its worker over a real SQLite store."""
from __future__ import annotations

import numpy as np
import pytest

from engine.text import chunk_text
from engine.records import NewMemory

# ----- chunk_text -----

STORY = (
    "The rain has not stopped for three days. Bram counts his coins twice and frowns! "
    "Does the smith really expect thirty gold by the full moon? "
    "Meanwhile Ann, who never trusted the innkeeper or his quiet daughter with the silver ring and the "
    "limping grey cat that follows her everywhere through the muddy lanes of the harbour town, slips "
    "out of the back door and into the night…\n\nShort line.\nAnother one."
)


def words(pieces: list[str]) -> list[str]:
    return " ".join(pieces).split()


@pytest.mark.parametrize("limit", [30, 45, 80, 120, 400])
def test_chunks_respect_the_limit_and_lose_nothing(limit):
    pieces = chunk_text(STORY, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert all(p == p.strip() for p in pieces)
    assert words(pieces) == STORY.split()  # every word, whole, in order


def test_chunks_end_at_sentence_ends_when_they_can():
    text = "One two. Three four five. Six seven eight nine. Ten."
    assert chunk_text(text, 30) == ["One two. Three four five.", "Six seven eight nine. Ten."]
    assert chunk_text(text, 21) == ["One two.", "Three four five.", "Six seven eight nine.", "Ten."]
    assert chunk_text("Why? Because! Fine… done.\nNext", 12) == ["Why?", "Because!", "Fine… done.", "Next"]
    assert chunk_text(text, 1000) == [text]


def test_an_overlong_sentence_is_cut_at_a_space():
    sentence = " ".join(f"word{i}" for i in range(30)) + "."
    pieces = chunk_text(sentence, 40)
    assert len(pieces) > 1 and all(len(p) <= 40 for p in pieces)
    assert all(p.split()[0].startswith("word") for p in pieces)  # no word cut in two
    assert words(pieces) == sentence.split()


def test_an_overlong_sentence_keeps_its_place_in_the_story():
    text = "Short one. " + " ".join(f"word{i}" for i in range(20)) + ". Tail end."
    pieces = chunk_text(text, 40)
    assert pieces[0] == "Short one."
    assert words(pieces) == text.split()


def test_a_word_longer_than_the_limit_is_cut_hard():
    assert chunk_text("Hi. " + "x" * 50, 20) == ["Hi.", "x" * 20, "x" * 20, "x" * 10]
    # the only space lies too early (before half the limit): cut at the limit rather than keep a stub
    assert chunk_text("a " + "x" * 50, 20) == ["a " + "x" * 18, "x" * 20, "x" * 12]


def test_empty_text_has_no_chunks():
    assert chunk_text("", 100) == [] and chunk_text("  \n\n ", 100) == []


# ----- recall with the real embedder -----

FACTS = [  # (player, action, narration) for turns 1..10
    ("Bram", "I owe the smith Tolda 30 gold coins and swear to repay her by the full moon.",
     "Rain drums on the roof while the fire crackles."),
    ("Ann", "I whisper the cellar password to the others: it is blue heron.",
     "An owl hoots somewhere beyond the stables."),
    ("Kel", "I raise my blade and name it Dawnbreaker, the sword of my mother.",
     "The crowd cheers and a child claps its hands."),
    ("Ann", "I saw it myself: the innkeeper's daughter Mira sends secret letters to the duke as his spy.",
     "Morning light spills over the rooftops."),
    ("Bram", "We bury the stolen crown under the old oak tree behind the mill.",
     "Crows circle above the empty field."),
    ("Cira", "My horse is a grey mare called Pepper and she hates the rain.",
     "The road bends north towards the hills."),
    ("Kel", "The ferryman says the ferry across the river only leaves at dawn and costs two silver.",
     "Mist rolls in from the water."),
    ("Cira", "Careful with moonpetal flowers: I am allergic, they make me sneeze and lose my spells.",
     "Bees hum over the meadow."),
    ("Ann", "The old map shows the dragon's lair hidden behind the great waterfall.",
     "Thunder rumbles far away."),
    ("Bram", "Captain Orsk promised us his ship if we free his brother from the city jail.",
     "A bell rings from the harbour tower."),
]
QUESTIONS = [  # (question, a piece of the fact that must come first)
    ("How much money does Bram owe the smith?", "30 gold coins"),
    ("What is the password to the cellar?", "blue heron"),
    ("What is the name of Kel's sword?", "Dawnbreaker"),
    ("Who is spying for the duke?", "Mira"),
    ("Where did they hide the stolen crown?", "old oak"),
    ("What is Cira's horse called?", "Pepper"),
    ("When does the ferry leave?", "only leaves at dawn"),
    ("Which flower is Cira allergic to?", "moonpetal"),
    ("Where is the dragon's lair?", "waterfall"),
    ("What did Captain Orsk promise the party?", "promised us his ship"),
]


@pytest.fixture
async def campaign(store, bank):
    """A campaign whose ten turns went through the real turn path: entries embedded, turn committed."""
    created = await store.create_campaign(1, "Facts")
    for author, text, narration in FACTS:
        act = await store.add_action(created.id, 7, author, text)
        await store.commit_turn(created.id, [act.id], narration, await bank.turn_entries([act], narration))
    return created


async def test_turn_entries_are_exact_and_chunked(bank, store):
    created = await store.create_campaign(2, "Chunks")
    act = await store.add_action(created.id, 7, "Ann", "I open the door. " * 20)
    entries = await bank.turn_entries([act], "The door creaks. It is dark inside.")
    texts = [e.text for e in entries]
    assert texts[0].startswith("I open the door.") and all(len(t) <= 200 for t in texts)
    assert texts[-1] == "The door creaks. It is dark inside."
    assert " ".join(texts[:-1]).split() == act.text.split()  # the name is beside the entry, not in it
    assert [e.speaker for e in entries] == ["Ann"] * (len(entries) - 1) + [None]
    assert {e.kind for e in entries} == {"exact"} and {e.embedder for e in entries} == {bank.embedder_id}
    assert all(e.vector.shape == (384,) and abs(float(np.linalg.norm(e.vector)) - 1) < 1e-4 for e in entries)


async def test_the_right_fact_comes_first_for_every_question(bank, campaign, store):
    assert await store.memory_count(campaign.id) == 20  # one action and one narration a turn
    for question, needle in QUESTIONS:
        found = await bank.recall(campaign.id, question, top_k=3, min_score=0.0)
        assert len(found) == 3, question
        assert needle in found[0].memory.text, (question, [r.memory.text for r in found])
        scores = [r.score for r in found]
        assert scores == sorted(scores, reverse=True) and found[0].similarity > 0.3


async def test_min_score_keeps_unrelated_entries_out(bank, campaign):
    off_topic = "Quarterly semiconductor export statistics for the automotive sector"
    assert await bank.recall(campaign.id, off_topic, top_k=5, min_score=0.35) == []
    anything = await bank.recall(campaign.id, off_topic, top_k=5, min_score=-1.0)
    assert len(anything) == 5 and all(r.similarity < 0.35 for r in anything)
    found = await bank.recall(campaign.id, "What is the password to the cellar?", top_k=5, min_score=0.35)
    assert 1 <= len(found) < 5 and all(r.similarity >= 0.35 or r.words for r in found)
    assert "blue heron" in found[0].memory.text


async def test_pinned_facts_come_first_without_a_score(bank, campaign, store):
    pinned = await bank.pin(campaign.id, "Ann is the rightful heir of House Vell.")
    assert pinned.pinned and pinned.kind == "fact"
    for question in ("Who is the rightful heir of House Vell?", "When does the ferry leave?"):
        found = await bank.recall(campaign.id, question, top_k=3, min_score=0.0)
        assert found[0].memory.id == pinned.id and found[0].score is None
        assert [r.memory.id for r in found].count(pinned.id) == 1  # not again among the scored ones
        assert len(found) == 4 and all(r.score is not None for r in found[1:])
    only_pins = await bank.recall(campaign.id, "anything", top_k=0, min_score=0.0)
    assert [(r.memory.id, r.score) for r in only_pins] == [(pinned.id, None)]


async def test_entries_of_the_recent_story_are_skipped(bank, campaign):
    question = "What is the password to the cellar?"  # told in turn 2
    everything = await bank.recall(campaign.id, question, top_k=3, min_score=0.0)
    assert "blue heron" in everything[0].memory.text and everything[0].memory.turn_from == 2
    found = await bank.recall(campaign.id, question, top_k=3, min_score=0.0, recent_from_turn=2)
    assert len(found) == 2  # only turn 1's two entries are older than turn 2
    assert all(r.memory.turn_from < 2 for r in found)
    found = await bank.recall(campaign.id, question, top_k=3, min_score=0.0, recent_from_turn=3)
    assert "blue heron" in found[0].memory.text


async def test_vectors_of_another_embedder_never_come_back(bank, campaign, store):
    question = "What is the password to the cellar?"
    (vector,) = await bank.embed([question])
    other = await store.add_memory(campaign.id, NewMemory("exact", "a vector from another model", vector, "other"))
    ids, matrix, _ = await store.memory_vectors(campaign.id, "other")
    assert ids == [other.id] and float(matrix[0] @ vector) == pytest.approx(1.0, abs=1e-5)
    found = await bank.recall(campaign.id, question, top_k=25, min_score=-1.0)
    assert len(found) == 20 and other.id not in [r.memory.id for r in found]


async def test_the_index_follows_every_change(bank, campaign, store):
    question = "What is the password to the cellar?"
    first = (await bank.recall(campaign.id, question, top_k=1, min_score=0.0))[0]
    assert "blue heron" in first.memory.text
    assert campaign.id in bank._index  # the vectors are cached now

    assert await store.delete_memory(campaign.id, first.memory.id)
    after_delete = await bank.recall(campaign.id, question, top_k=20, min_score=-1.0)
    assert first.memory.id not in [r.memory.id for r in after_delete] and len(after_delete) == 19

    (entry,) = await bank._entries("exact", ["The new cellar password is red falcon."])
    added = await store.add_memory(campaign.id, entry)
    after_add = await bank.recall(campaign.id, question, top_k=1, min_score=0.0)
    assert after_add[0].memory.id == added.id

    act = await store.add_action(campaign.id, 7, "Ann", "I tell everyone the cellar password changed again: it is green toad.")
    narration = "Nobody says a word."
    turn, _ = await store.commit_turn(campaign.id, [act.id], narration, await bank.turn_entries([act], narration))
    after_turn = await bank.recall(campaign.id, question, top_k=30, min_score=-1.0)
    assert len(after_turn) == 22 and [r.memory.turn_from for r in after_turn].count(11) == 2
    toad = await bank.recall(campaign.id, "Is the password green toad?", top_k=1, min_score=0.0)
    assert "green toad" in toad[0].memory.text and toad[0].memory.turn_from == turn.number == 11

    await bank.pin(campaign.id, "The cellar door is painted blue.")
    assert await store.reset_memory(campaign.id, keep_pinned=True) == 22
    after_reset = await bank.recall(campaign.id, question, top_k=5, min_score=-1.0)
    assert [(r.memory.text, r.score) for r in after_reset] == [("The cellar door is painted blue.", None)]
    assert await store.reset_memory(campaign.id) == 1
    assert await bank.recall(campaign.id, question, top_k=5, min_score=-1.0) == []


async def test_an_undone_turn_takes_its_memories_out_of_recall(bank, campaign, store):
    question = "What did Captain Orsk promise the party?"
    assert "Orsk" in (await bank.recall(campaign.id, question, top_k=1, min_score=0.0))[0].memory.text
    undone = await store.undo_last_turn(campaign.id)
    assert undone.number == 10
    found = await bank.recall(campaign.id, question, top_k=20, min_score=-1.0)
    assert len(found) == 18 and all(r.memory.turn_from < 10 for r in found)


async def test_campaigns_do_not_share_memories(bank, campaign, store):
    other = await store.create_campaign(2, "Elsewhere")
    assert await bank.recall(other.id, "What is the password to the cellar?", top_k=5, min_score=-1.0) == []
    await bank.recall(campaign.id, "What is the password to the cellar?", top_k=1, min_score=0.0)
    await bank.pin(other.id, "The cellar here has no password.")
    found = await bank.recall(campaign.id, "What is the password to the cellar?", top_k=1, min_score=0.0)
    assert "blue heron" in found[0].memory.text and found[0].score is not None
