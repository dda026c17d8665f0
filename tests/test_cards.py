"""Story cards: keys, matching, their place and budget in the prompt (the bundled model's tokenizer),
and the store's card table in a real SQLite file."""
from __future__ import annotations

import dataclasses

import pytest
from test_prompt import CAMPAIGN, PINNED, RECALLED, TURNS, action, build

from engine.table.cards import MAX_KEYS, Triggered, mentions, parse_keys, triggered_cards
from engine.errors import BadInput
from engine.records import Card, Turn


def card(i: int, keys: tuple[str, ...], text: str) -> Card:
    return Card(i, 1, keys, text, text, 0.0)


MIRELDA = card(1, ("Mirelda", "innkeeper"), "Mirelda runs the Drowned Rat inn and owes the thieves' guild 200 gold.")
MILL = card(2, ("old mill", "Мельница"), "The old mill hides a stair down to the smugglers' cave.")
GUILD = card(3, ("guild",), "The thieves' guild meets under the fish market on moonless nights.")


def test_keys_are_comma_separated_words_once_each_within_limits():
    assert parse_keys(" Mirelda ,innkeeper,, mirelda , the  old mill ") == ["Mirelda", "innkeeper", "the old mill"]
    for bad, message in ((" , ", "give the card's keys"), ("x" * 41, "at most 40 characters"),
                         (",".join(f"k{i}" for i in range(MAX_KEYS + 1)), f"at most {MAX_KEYS} keys")):
        with pytest.raises(BadInput, match=message):
            parse_keys(bad)


def test_a_key_matches_at_a_word_start_in_any_letter_case_and_a_short_ending():
    found = triggered_cards([MIRELDA, MILL, GUILD], ["I ask MIRELDA's cousin about the Old Mill."])
    assert [(t.card.id, t.key) for t in found] == [(1, "Mirelda"), (2, "old mill")]
    assert triggered_cards([MILL], ["Идём к мельнице"]) == [Triggered(MILL, "Мельница")]  # a Russian ending
    assert [t.key for t in triggered_cards([MIRELDA], ["two innkeepers"])] == ["innkeeper"]
    for text in ("The guildhall is closed.", "a windmill", "xMirelda", "innkeeping", "old millstones"):
        assert [t.card.id for t in triggered_cards([MIRELDA, MILL, GUILD], [text])] == [], text


def test_cards_come_in_the_order_they_are_mentioned_at_most_the_limit():
    found = triggered_cards([MIRELDA, MILL, GUILD], ["the guild", "the innkeeper", "the old mill"], limit=2)
    assert [t.card.id for t in found] == [3, 1]


def test_mentions_are_the_actions_as_written_and_translated_then_the_last_turns_newest_first():
    translated = action(1, "Ann", "I go to the mill.")
    translated = dataclasses.replace(translated, original="Я иду на мельницу.")
    texts = mentions([translated], "look around", TURNS, recent=2)
    assert texts[:3] == ["I go to the mill.", "Я иду на мельницу.", "look around"]
    assert texts[3:] == ["I search room 8 for the lost key.", TURNS[-1].narration,
                         "I search room 7 for the lost key.", TURNS[-2].narration]
    assert not any("room 6" in t for t in texts)


def test_in_the_prompt_cards_stand_after_pinned_facts_and_before_recalled_memories(text_backend):
    built = build(text_backend, 4000, cards=[Triggered(MIRELDA, "Mirelda"), Triggered(MILL, "old mill")])
    assert built.cards == (Triggered(MIRELDA, "Mirelda"), Triggered(MILL, "old mill"))
    text = built.rendered
    assert text.index("Tolda") < text.index("Drowned Rat") < text.index("smugglers' cave") < text.index("blue heron")


def test_cards_go_after_recalled_memories_and_before_pinned_facts_when_the_budget_is_short(text_backend):
    cards = [Triggered(MIRELDA, "Mirelda"), Triggered(MILL, "old mill")]
    one_card = build(text_backend, 4000, turns=[], memories=[PINNED], cards=cards[:1])
    built = build(text_backend, one_card.tokens, cards=cards)
    assert built.tokens <= one_card.tokens and built.turns_used == 0
    assert built.cards == (cards[0],) and "Drowned Rat" in built.rendered and "smugglers" not in built.rendered
    assert built.memories_used == 1 and "Tolda" in built.rendered and "blue heron" not in built.rendered
    pinned_only = build(text_backend, 4000, turns=[], memories=[PINNED], cards=[])
    built = build(text_backend, pinned_only.tokens, cards=cards)
    assert built.cards == () and "Tolda" in built.rendered


def test_no_card_no_section_change(text_backend):
    assert build(text_backend, 4000).rendered == build(text_backend, 4000, cards=[]).rendered
    assert RECALLED and CAMPAIGN and isinstance(TURNS[0], Turn)


async def test_the_store_keeps_cards_per_campaign(store):
    first = await store.create_campaign(1, "One")
    second = await store.create_campaign(2, "Two")
    added = await store.add_card(first.id, ["Mirelda", "Мирельда"], "Mirelda runs the inn.", "Мирельда держит трактир.")
    assert added.keys == ("Mirelda", "Мирельда") and added.written == "Мирельда держит трактир."
    assert await store.cards(first.id) == [added] and await store.cards(second.id) == []
    assert not await store.remove_card(second.id, added.id)  # another campaign's card stays
    assert await store.remove_card(first.id, added.id) and await store.cards(first.id) == []
