"""The marker language (engine/game/markers.py), the ledger that applies and takes back state markers
(engine/game/ledger.py), and a narration's markers turned into a turn (engine/table/turn_markers.py)."""
from __future__ import annotations

import json
import logging
import re

import pytest

from engine.game import Sheet
from engine.game.ledger import Party, apply, changes, revert
from engine.game.markers import RollMarker, StateMarker, extract, hidden, last_roll, parse
from engine.table.kept_text import stream_view
from engine.table.turn_markers import Narration, npc_rolls


@pytest.mark.parametrize("body, marker", [
    ("roll 1d20+3 stealth for Aria", RollMarker("1d20+3", "stealth", "Aria")),
    ("roll 1d20+4 goblin attack", RollMarker("1d20+4", "goblin attack")),
    ("roll 1d20 adv perception for Bram", RollMarker("1d20 adv", "perception", "Bram")),
    ("ROLL  2d6+2   for  Aria", RollMarker("2d6+2", "", "Aria")),
    ("hp Aria -5", StateMarker("hp", "Aria", -1, "5")),
    ("hp Goblin 1 +2d4", StateMarker("hp", "Goblin 1", 1, "2d4")),
    ("item Aria +torch", StateMarker("item", "Aria", 1, "torch")),
    ("item Aria -arrow x3", StateMarker("item", "Aria", -1, "arrow", 3)),
    ("item Aria + healing potion x2", StateMarker("item", "Aria", 1, "healing potion", 2)),
    ("condition Aria +poisoned", StateMarker("condition", "Aria", 1, "poisoned")),
    ("gold Aria +10", StateMarker("gold", "Aria", 1, "10")),
    ("gold Aria ten", None), ("hp Aria", None), ("dance wildly", None), ("", None), ("item Aria +torch x0", None),
])
def test_markers_parse(body, marker):
    assert parse(body) == marker


def test_markers_come_out_of_the_text_and_one_that_does_not_parse_is_dropped_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="engine.game.markers")
    text, found = extract("The blade bites. [[hp Aria -5]] She reels [[item Aria -arrow x3]].\n[[sing]]\n\nThe end. [[hp Ar")
    assert text == "The blade bites. She reels.\n\nThe end."
    assert found == [StateMarker("hp", "Aria", -1, "5"), StateMarker("item", "Aria", -1, "arrow", 3)]
    assert "[[sing]]" in caplog.text and "[[hp Ar" in caplog.text


def test_a_stream_never_shows_a_marker_nor_its_start_at_any_moment():
    reply = "The goblin lunges. [[roll 1d20+4 goblin attack]] It misses. [[hp Aria -2]] Aria [[item Aria +torch]] stands."
    for end in range(len(reply) + 1):
        shown = hidden(reply[:end])
        assert "[" not in shown and "]" not in shown, (end, shown)
    assert hidden(reply) == "The goblin lunges. It misses. Aria stands."


async def test_the_stream_view_hides_markers_and_keeps_the_rest():
    view = stream_view({"Aria"})
    shown = await view("The door opens. [[hp Aria -1]] A cold wind blows. The [[ro")
    assert shown == "The door opens. A cold wind blows."  # the last sentence shows once the next one began


def test_a_reply_that_ends_with_a_roll_marker_is_found():
    found = last_roll("It swings. [[roll 1d20+4 goblin attack]]  ")
    assert found and found[1] == RollMarker("1d20+4", "goblin attack")
    assert last_roll("It swings. [[hp Aria -1]]") is None and last_roll("[[roll 1d20]] and on") is None


def aria() -> Sheet:
    sheet = Sheet(name="Aria Swiftwind", max_hp=24, hp=20, temp_hp=3)
    return sheet.with_item("arrows", 20)[0]


def test_names_resolve_to_players_and_npc_rolls_are_made_in_place():
    party = Party({1: aria()}, {1: "alice", 2: "Bram"})
    assert party.find("Aria") == 1 and party.find("aria swiftwind") == 1 and party.find("Bram") == 2
    assert party.find("goblin") is None
    text = npc_rolls("Arrows fly. [[roll 1d20+4 goblin attack]] Aria ducks. [[roll 1d20+3 stealth for Aria]]", party)
    assert re.fullmatch(r"Arrows fly\. \[rolled 1d20\+4 for goblin attack = \d+\] Aria ducks\. "
                        r"\[\[roll 1d20\+3 stealth for Aria\]\]", text), text
    assert npc_rolls("It swings [[roll 1d0 club]] wide.", party) == "It swings  wide."  # cannot be rolled: dropped


def test_the_ledger_applies_once_takes_back_by_deltas_and_says_why_nothing_changed():
    party = Party({1: aria()}, {1: "alice"})
    markers = [parse(b) for b in ("hp Aria -5", "item Aria -arrow x3", "condition Aria +poisoned", "gold Aria +12",
                                  "hp Zed -3", "item Aria -rope", "condition Aria -prone")]
    planned = changes(markers, party)
    sheets = {1: aria().to_json()}
    changed, fight, record = apply(sheets, None, planned)
    assert fight is None
    after = json.loads(changed[1])
    assert (after["hp"], after["temp_hp"], after["inventory"], after["conditions"], after["gold"]) == \
        (18, 0, {"arrows": 17}, ["poisoned"], 12)  # temporary HP first
    assert record["lines"] == [
        "Aria Swiftwind takes 5 damage (HP 18/24)", "Aria Swiftwind loses 3 arrows", "Aria Swiftwind is poisoned",
        "Aria Swiftwind gains 12 gold (12 gold)", "Nothing changed: nobody here is called Zed",
        "Nothing changed: Aria Swiftwind has no rope", "Nothing changed: Aria Swiftwind is not prone"]
    # the player spends 2 gold and shoots 15 arrows meanwhile: taking the turn back leaves that alone
    spent = Sheet(**{**vars(party_sheet(changed[1])), "gold": 10}).with_item("arrows", -15)[0]
    back = json.loads(revert({1: spent.to_json()}, None, record)[0][1])
    assert (back["hp"], back["temp_hp"], back["inventory"], back["conditions"], back["gold"]) == \
        (20, 3, {"arrows": 5}, [], 0)


def party_sheet(data: str) -> Sheet:
    from engine.game import sheet_from_json
    return sheet_from_json(data)


def test_a_narration_settles_its_markers_and_a_retold_one_replaces_them():
    party = Party({1: aria()}, {1: "alice"})
    first = Narration.of("The trap springs. [[hp Aria -4]] Dust settles. [[roll 1d20+3 dex for Aria]] unread",
                         {"alice"}, party)
    assert first.text == "The trap springs. Dust settles."
    sheets = {1: aria().to_json()}
    changed, fight, effects = first.settle(sheets, None, None)
    assert json.loads(changed[1])["temp_hp"] == 0 and json.loads(changed[1])["hp"] == 19
    assert effects["requests"] == [{"author": 1, "name": "Aria Swiftwind", "expression": "1d20+3", "reason": "dex"}]
    retold = Narration.of("Nothing happens.", {"alice"}, party)
    again, fight, effects2 = retold.settle({**sheets, **changed}, None, effects)
    assert json.loads(again[1])["hp"] == 20 and json.loads(again[1])["temp_hp"] == 3
    assert effects2 == {"applied": [], "lines": [], "requests": []}
