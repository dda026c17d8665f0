"""engine/game/sheets.py: fields checked as typed, HP within 0..max with temporary HP first, an inventory
that only changes by quantities, the DM's party line, modifiers for rolls, and the JSON round trip."""
from __future__ import annotations

import pytest

from engine.errors import BadInput
from engine.game.dice import roll
from engine.game.sheets import Sheet, sheet_from_json


def aria() -> Sheet:
    sheet = Sheet(name="Aria")
    for name, value in (("pronouns", "she"), ("ancestry", "elf"), ("class", "ranger"), ("level", "3"),
                        ("max hp", "24"), ("hp", "15"), ("ac", "14"), ("dex", "16"), ("wis", "13"),
                        ("skills", "Stealth, perception"), ("conditions", "poisoned"), ("gold", "12")):
        sheet = sheet.with_field(name, value)
    for item, quantity in (("longbow", 1), ("arrow", 20), ("rope", 1)):
        sheet = sheet.with_item(item, quantity)[0]
    return sheet


def test_the_party_line_is_what_the_dm_reads():
    assert aria().party_line() == ("Aria (she, elf ranger 3): HP 15/24, AC 14, poisoned; "
                                   "carries longbow, 20 arrow, rope; 12 gold")
    assert Sheet(name="Bram").party_line() == "Bram: HP 10/10, AC 10"


def test_damage_takes_temporary_hp_first_and_hp_stays_within_zero_and_max():
    sheet = aria().with_field("temp", "5")
    hurt, said = sheet.with_hp(-8)
    assert (hurt.hp, hurt.temp_hp) == (12, 0) and said == "Aria takes 8 damage (HP 12/24)"
    down, said = hurt.with_hp(-100)
    assert down.hp == 0 and said.endswith("Aria is down") and "down" in down.party_line()
    healed, said = down.with_hp(100)
    assert healed.hp == 24 and said == "Aria heals 100 (HP 24/24)"


def test_the_inventory_changes_by_quantities_and_never_below_none():
    sheet = aria()
    fewer, said = sheet.with_item("Arrow", -3)
    assert fewer.inventory == {"longbow": 1, "arrow": 17, "rope": 1} and said == "Aria loses 3 arrow"
    gone, _ = fewer.with_item("rope", -1)
    assert "rope" not in gone.inventory and gone.inventory["longbow"] == 1  # the rest stays as it was
    with pytest.raises(BadInput, match="Aria has no torch"):
        sheet.with_item("torch", -1)
    with pytest.raises(BadInput, match="Aria has 20 arrow"):
        sheet.with_item("arrow", -21)
    with pytest.raises(BadInput, match="quantity"):
        sheet.with_item("arrow", 0)
    assert sheet.with_gold(-12)[0].gold == 0
    with pytest.raises(BadInput, match="only 12 gold"):
        sheet.with_gold(-13)


@pytest.mark.parametrize("name, value, said", [
    ("charisma score", "12", "no field"), ("dex", "31", "from 1 to 30"), ("ac", "ten", "whole number"),
    ("hp", "25", "above max HP"), ("skills", "stealth, flying", "no skill called flying"), ("name", "  ", "needs a name"),
    ("notes", "x" * 1001, "at most 1000"),
])
def test_a_field_that_does_not_fit_is_refused(name, value, said):
    with pytest.raises(BadInput, match=said):
        aria().with_field(name, value)


def test_rolls_use_the_sheets_modifiers_by_name():
    mods = aria().modifiers()
    assert (mods["dex"], mods["stealth"], mods["perception"], mods["athletics"], mods["prof"]) == (3, 5, 3, 0, 2)
    assert roll("1d20+stealth", mods).expression == "1d20+5"
    assert roll("1d20 + sleight of hand", mods).expression == "1d20 + 3"


def test_a_sheet_exports_and_imports_unchanged_and_bad_json_is_refused():
    sheet = aria()
    assert sheet_from_json(sheet.to_json()) == sheet
    for bad in ("not json", "[]", '{"name": "Aria", "dex": 40}', '{"name": "Aria", "inventory": {"rope": -1}}'):
        with pytest.raises(BadInput):
            sheet_from_json(bad)


def test_the_party_block_stays_within_the_prompts_budget():
    from engine.records import Action, Campaign
    from engine.table.prompt import build_prompt

    campaign = Campaign(id=1, channel_id=1, name="c", premise="A crypt.", style="", language="en", settings={},
                        active=True, created=0.0)
    actions = [Action(id=1, campaign_id=1, author_id=1, author_name="Aria", text="I open the door.", created=0.0,
                      turn_id=None)]
    party = [aria().party_line(), Sheet(name="Bram").party_line()]

    def count(text: str) -> int:
        return len(text.split())

    def build(budget: int):
        return build_prompt(campaign, memories=[], turns=[], actions=actions, render=lambda p: f"{p.system}\n{p.user}",
                            count_tokens=count, budget=budget, party=party)

    roomy = build(500)
    assert "The party:\n- Aria (she, elf ranger 3)" in roomy.prompt.user and "- Bram: HP 10/10" in roomy.prompt.user
    without_bram = count(roomy.rendered) - count("- " + party[1])
    tight = build(without_bram)
    assert tight.tokens <= without_bram and "Aria (she" in tight.prompt.user and "Bram: HP" not in tight.prompt.user
