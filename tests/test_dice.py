"""engine/game/dice.py: d20 rolls within limits, names as modifiers, advantage, how a roll enters the story."""
from __future__ import annotations

import random
import re

import pytest

from engine.errors import BadInput
from engine.game.dice import MAX_DICE, ROLLS_RULE, roll
from engine.records import Action, Campaign
from engine.table.prompt import _sections


def test_every_die_is_shown_and_the_total_is_theirs():
    for _ in range(50):
        result = roll("4d6kh3")
        inside = result.shown.split("(", 1)[1].split(")")[0]  # "2, ~~1~~, **6**, 4": the dropped one struck
        assert len(re.findall(r"\d", inside)) == 4 and inside.count("~~") == 2
        kept = re.findall(r"\d", re.sub(r"~~.*?~~", "", inside))
        assert result.total == sum(int(d) for d in kept) and 3 <= result.total <= 18, result


def test_advantage_rolls_two_d20_and_keeps_the_higher():
    for _ in range(30):
        result = roll("1d20+5 adv")
        low, high = sorted(int(d) for d in re.findall(r"\d+", result.shown.split("(", 1)[1].split(")")[0]))
        assert result.shown.startswith("2d20kh1 (") and result.total == high + 5
        assert roll("1d20 dis").shown.startswith("2d20kl1 (")
    assert result.expression == "1d20+5 adv"


def test_names_stand_for_the_rollers_modifiers_and_comments_stay_words():
    result = roll("1d20+dex+prof [sneak]", {"dex": 3, "prof": 2})
    assert result.expression == "1d20+3+2 [sneak]" and "[sneak]" in result.shown
    assert 6 <= result.total <= 25
    assert roll("1d20 + sleight of hand", {"sleight of hand": 4}).total >= 5
    with pytest.raises(BadInput, match=r"`wis` is not a number or a modifier I know \(known: dex\)"):
        roll("1d20+wis", {"dex": 3})


@pytest.mark.parametrize("dice, said", [
    ("", "write the dice"), ("   ", "write the dice"), ("1d0", "0-sided"), ("1/0", "divide by zero"),
    (f"{MAX_DICE + 1}d6", "at most 100 dice"), ("60d6+41d6", "at most 100 dice"), ("1d1001", "at most 1000 sides"),
    ("1d6!", "not a roll I can read"), ("x" * 201, "at most 200 characters"),
])
def test_bad_rolls_are_refused_never_rolled_as_zero(dice, said):
    with pytest.raises(BadInput, match=re.escape(said)):
        roll(dice)


def test_d20s_own_roll_limit_holds_for_rerolls():
    with pytest.raises(BadInput, match="rerolls included"):
        roll("1d1e1")  # a d1 exploding on 1 explodes forever: d20 stops at its limit


def test_a_reason_too_long_is_refused_and_a_roll_reads_in_the_story_as_it_fell():
    with pytest.raises(BadInput, match="reason may be at most 80"):
        roll("1d20", reason="x" * 81)
    random.seed(3)
    result = roll("1d20+5")
    assert result.story_text(" Stealth ") == f"[rolled 1d20+5 for Stealth = {result.total}]"
    assert result.story_text() == f"[rolled 1d20+5 = {result.total}]"


def test_the_prompt_tells_the_model_the_dice_have_fallen_only_when_they_have():
    campaign = Campaign(id=1, channel_id=1, name="c", premise="A crypt.", style="", language="en", settings={},
                        active=True, created=0.0)
    plain = [Action(id=1, campaign_id=1, author_id=1, author_name="Aria", text="I open the door.", created=0.0, turn_id=None)]
    rolled = [*plain, Action(id=2, campaign_id=1, author_id=1, author_name="Aria",
                             text=roll("1d20").story_text("Strength"), created=0.0, turn_id=None)]
    assert ROLLS_RULE not in _sections(campaign, [], [], plain, "", 500, [])[0]
    system, user, _ = _sections(campaign, [], [], rolled, "", 500, [])
    assert ROLLS_RULE in system and "Aria: [rolled 1d20 for Strength = " in user
