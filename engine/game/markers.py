"""The DM's markers: how the model asks for a roll and changes the game's state, written in its narration
and taken out of it before anyone reads it (DnDnAi's idea; here the narration follows an NPC's roll).

    [[roll 1d20+3 stealth for Aria]]   a player's roll: the narration stops there and Aria gets a Roll button
    [[roll 1d20+4 goblin attack]]      anyone else's: rolled at once, written in its place, the story goes on
    [[hp Aria -5]]  [[hp Aria +2d4]]    damage or healing (temporary HP first, never below 0 or above max)
    [[item Aria +torch]]  [[item Aria -arrow x3]]
    [[condition Aria +poisoned]]  [[condition Aria -poisoned]]
    [[gold Aria +10]]
    [[combat start: 3 goblins]]  [[combat end]]

State markers change nothing here: engine/game/ledger.py applies them when the narration is saved.
A marker that does not parse is dropped from the text and logged.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

MARKER = re.compile(r"\[\[([^\[\]\n]{0,200})\]\]")
_OPEN_AT_END = re.compile(r"\[(?:\[[^\]\n]{0,200}(?:\](?!\]))?)?$")  # "[", "[[hp Ar", "[[hp Aria -5]": not shown yet
_ROLL = re.compile(r"roll\s+(\S+(?:\s+(?:adv|dis)\b)?)\s*(.*)", re.IGNORECASE | re.DOTALL)
_FOR = re.compile(r"^(.*?)\s*\bfor\s+(.+)$", re.IGNORECASE)
_AMOUNT = r"[+-]\s*(?:\d{1,6}|\d{0,3}d\d{1,4}(?:\s*[+-]\s*\d{1,4})?)"
_HP_GOLD = re.compile(rf"(hp|gold)\s+(.+?)\s+({_AMOUNT})", re.IGNORECASE)
_ITEM = re.compile(r"(item|condition)\s+(.+?)\s+([+-])\s*(.+?)(?:\s+x\s*(\d{1,6}))?", re.IGNORECASE)
_COMBAT = re.compile(r"combat\s+(start|end)(?:\s*:?\s*(.*))?", re.IGNORECASE)
MARKERS_RULE = (
    "To ask a player for a roll, end your narration with [[roll DICE SKILL for NAME]], e.g. "
    "[[roll 1d20+3 stealth for Aria]], and stop there. Roll for anyone else with [[roll DICE WHAT]], e.g. "
    "[[roll 1d20+4 goblin attack]]: the result appears at once and you narrate what it means. "
    "Change the characters only with markers: [[hp NAME -5]], [[hp NAME +4]], [[item NAME +torch]], "
    "[[item NAME -arrow x3]], [[condition NAME +poisoned]], [[gold NAME +10]]. Start a fight with "
    "[[combat start: 3 goblins]] and end it with [[combat end]]."
)


@dataclass(frozen=True)
class RollMarker:
    """A roll the DM asks for: `who` is a player's character (a Roll button) or anyone else (rolled at once)."""
    expression: str
    reason: str
    who: str = ""


@dataclass(frozen=True)
class StateMarker:
    """A change to a character: kind hp|gold (change "+10", "-2d6"), item|condition (change "+torch x2")."""
    kind: str
    who: str
    sign: int
    what: str  # hp/gold: the amount as written, without its sign; item/condition: the name
    quantity: int = 1


@dataclass(frozen=True)
class CombatMarker:
    """A fight started ("3 goblins, an ogre hp 30": who joins the party in it) or ended."""
    start: bool
    npcs: str = ""


Marker = RollMarker | StateMarker | CombatMarker


def parse(body: str) -> Marker | None:
    """A marker's inside ("roll 1d20+4 goblin attack"); None when it is not one the DM may write."""
    body = " ".join(body.split())
    if match := _ROLL.fullmatch(body):
        expression, rest = match.group(1), match.group(2).strip()
        reason, who = rest, ""
        if found := _FOR.match(rest):
            reason, who = found.group(1).strip(), found.group(2).strip()
        return RollMarker(expression, reason, who)
    if match := _COMBAT.fullmatch(body):
        start = match.group(1).lower() == "start"
        return CombatMarker(start, (match.group(2) or "").strip() if start else "")
    if match := _HP_GOLD.fullmatch(body):
        amount = match.group(3).replace(" ", "")
        return StateMarker(match.group(1).lower(), match.group(2), -1 if amount[0] == "-" else 1, amount[1:])
    if match := _ITEM.fullmatch(body):
        quantity = int(match.group(5) or 1)
        if quantity < 1:
            return None
        return StateMarker(match.group(1).lower(), match.group(2), -1 if match.group(3) == "-" else 1,
                           match.group(4).strip(), quantity)
    return None


def extract(text: str) -> tuple[str, list[Marker]]:
    """The text without its markers (spaces tidied where one stood), and the markers that parse, in order;
    one that does not parse is dropped and logged, an unfinished one at the end too."""
    found: list[Marker] = []

    def take(match: re.Match) -> str:
        marker = parse(match.group(1))
        if marker is None:
            log.info("dropped a marker that does not parse: %r", match.group(0))
        else:
            found.append(marker)
        return "\x00"

    text = MARKER.sub(take, text)
    if tail := _OPEN_AT_END.search(text):
        if "[[" in tail.group(0):
            log.info("dropped an unfinished marker: %r", tail.group(0))
            text = text[:tail.start()]
    return _tidy(text), found


def hidden(text: str) -> str:
    """A text still being written, as the table may see it: no marker, nor the start of one."""
    text = MARKER.sub("\x00", text)
    if tail := _OPEN_AT_END.search(text):
        text = text[:tail.start()]
    return _tidy(text)


def last_roll(text: str) -> tuple[re.Match, RollMarker] | None:
    """The roll marker a reply ends with (generation stops right after one), with where it stands."""
    stripped = text.rstrip()
    if not stripped.endswith("]]"):
        return None
    match = None
    for match in MARKER.finditer(stripped):
        pass
    if match is None or match.end() != len(stripped):
        return None
    marker = parse(match.group(1))
    return (match, marker) if isinstance(marker, RollMarker) else None


def ends_with_roll(text: str) -> bool:
    """Whether a reply being written just finished a roll marker: generation stops there."""
    return last_roll(text) is not None


def _tidy(text: str) -> str:
    """Where a marker stood: no doubled space, no space before punctuation, no line left empty by it."""
    text = re.sub(r"[ \t]*\x00[ \t]*", "\x00", text)
    text = re.sub(r"(?<=\S)\x00+(?=[^\s.,;:!?…])", " ", text)
    text = text.replace("\x00", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip() if "\n" in text else text.strip()
