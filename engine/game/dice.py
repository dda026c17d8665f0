"""Dice the model cannot fudge: an expression rolled with Avrae's own dice library (d20), within limits, its
every die shown.

`1d20+5`, `4d6kh3`, `2d20kl1`, `8d6 [fire]`, `1d20+5 adv` / `dis` (d20's advantage: the leftmost d20 becomes
2d20kh1 / 2d20kl1), and names in place of numbers (`1d20+dex`) when the caller gives the roller's modifiers.
A roll that does not parse, exceeds the limits, or divides by zero is refused with a clear message: never
a 0 posted as a result.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import d20

from engine.errors import BadInput

MAX_CHARS, MAX_DICE, MAX_SIDES, REASON_MAX_CHARS = 200, 100, 1000, 80
ROLLED = "[rolled "  # how a roll stands in the players' actions
ROLLS_RULE = ("The dice in the players' actions ([rolled ...]) have been rolled: narrate what each result means "
              "as it fell, high or low; never roll them again or change them.")
_ADVANTAGE = re.compile(r"\s+(adv|dis)\s*$", re.IGNORECASE)
_DICE = re.compile(r"(\d*)\s*d\s*(\d+)", re.IGNORECASE)
_NAME = re.compile(r"(?<![\w\[])([A-Za-z_][A-Za-z_ ]*[A-Za-z_]|[A-Za-z_])(?![\w\]])")
# d20's own limit on dice rolled in one expression (exploding and rerolled dice count too)
_ROLLER = d20.Roller(context=d20.RollContext(max_rolls=MAX_DICE * 10))


@dataclass(frozen=True)
class Roll:
    """A roll as it fell: what was asked, the dice in Markdown (kept and dropped, crits bold), the total."""
    expression: str
    shown: str
    total: int

    def story_text(self, reason: str = "") -> str:
        """How the roll enters the story (the players' actions): the model narrates it as it fell."""
        reason = " ".join(reason.split())
        why = f" for {reason}" if reason else ""
        return f"{ROLLED}{self.expression}{why} = {self.total}]"


def roll(expression: str, modifiers: Mapping[str, int] | None = None, reason: str = "") -> Roll:
    """Roll `expression`; names in it are replaced by `modifiers` (lower-case keys). Raises BadInput."""
    if len(" ".join(reason.split())) > REASON_MAX_CHARS:
        raise BadInput(f"a roll's reason may be at most {REASON_MAX_CHARS} characters")
    text = " ".join(expression.split())
    if not text:
        raise BadInput("write the dice to roll, e.g. 1d20+5, 4d6kh3 or 1d20 adv")
    if len(text) > MAX_CHARS:
        raise BadInput(f"a roll may be at most {MAX_CHARS} characters")
    advantage = d20.AdvType.NONE
    if match := _ADVANTAGE.search(text):
        advantage = d20.AdvType.ADV if match.group(1).lower() == "adv" else d20.AdvType.DIS
        text = text[:match.start()]
    text = _with_modifiers(text, modifiers or {})
    count = 0
    for number, sides in _DICE.findall(text):
        count += int(number or 1)
        if int(sides) > MAX_SIDES:
            raise BadInput(f"a die may have at most {MAX_SIDES} sides")
    if count > MAX_DICE:
        raise BadInput(f"a roll may throw at most {MAX_DICE} dice")
    try:
        result = _ROLLER.roll(text, advantage=advantage, allow_comments=False)
        total, shown = int(result.total), result.result  # both evaluated here: 1/0 fails only when read
    except d20.TooManyRolls:
        raise BadInput(f"a roll may throw at most {MAX_DICE * 10} dice, rerolls included") from None
    except d20.RollSyntaxError:
        raise BadInput(f"`{text}` is not a roll I can read; try 1d20+5, 4d6kh3, 2d20kl1 or 1d20 adv") from None
    except (d20.RollError, ZeroDivisionError, ValueError, OverflowError) as exc:
        raise BadInput(f"`{text}` cannot be rolled: {exc}") from None
    return Roll(expression=text + ("" if advantage == d20.AdvType.NONE else f" {match.group(1).lower()}"),
                shown=shown, total=total)


def _with_modifiers(text: str, modifiers: Mapping[str, int]) -> str:
    """Names replaced by the roller's numbers ("1d20+dex" -> "1d20+2"); a [comment] is left alone."""
    def number(match: re.Match) -> str:
        word = match.group(1)  # dice notation (1d20, kh3, ro1) always follows a digit: never matched here
        key = word.strip().lower()
        if key not in modifiers:
            raise BadInput(f"`{word}` is not a number or a modifier I know" +
                           (f" (known: {', '.join(sorted(modifiers))})" if modifiers else ""))
        return str(modifiers[key])
    outside = re.split(r"(\[[^\]]*\])", text)
    return "".join(part if part.startswith("[") else _NAME.sub(number, part) for part in outside)


def amount(text: str) -> int:
    """A change typed as -5, +3 or dice (-2d6, 1d8+2): dice are rolled, their sign kept."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d{1,6}", text):
        return int(text)
    sign = -1 if text.startswith("-") else 1
    return sign * roll(text.lstrip("+-")).total
