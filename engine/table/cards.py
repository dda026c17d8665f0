"""Story cards: lore an admin writes once ("Mirelda: the innkeeper, owes the thieves' guild") that enters the
prompt only when one of its keys is mentioned in what the players do now or in the last turns, as
SillyTavern's World Info and AI Dungeon's story cards do. Pinned facts always come; cards come when
they matter, so a campaign can hold many without filling every prompt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from engine.errors import BadInput
from engine.records import Action, Card, Turn

CARD_MAX_CHARS = 600  # a card is a paragraph of lore, not a chapter
KEY_MAX_CHARS = 40
MAX_KEYS = 10
MAX_CARDS_IN_PROMPT = 5
MENTION_TURNS = 2  # the last turns whose words trigger cards, beside what the players do now
# A key matches at a word start, and a few more letters may follow: "innkeepers", "Брама" for "Брам". A
# longer key's last vowel may change too, as Russian endings do ("мельнице" for "мельница").
_SUFFIX = r"\w{0,3}(?!\w)"
_ENDINGS = set("aeiouyаеёиоуыэюяйь")


def parse_keys(text: str) -> list[str]:
    """Comma-separated words or names, each at most KEY_MAX_CHARS, the same key once."""
    keys: list[str] = []
    for key in (" ".join(k.split()) for k in text.split(",")):
        if key and key.casefold() not in {k.casefold() for k in keys}:
            if len(key) > KEY_MAX_CHARS:
                raise BadInput(f"a key is a word or a name of at most {KEY_MAX_CHARS} characters, not {key[:50]!r}")
            keys.append(key)
    if not keys:
        raise BadInput("give the card's keys: words or names, separated by commas")
    if len(keys) > MAX_KEYS:
        raise BadInput(f"a card has at most {MAX_KEYS} keys")
    return keys


def card_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise BadInput("an empty card: write what the DM should know")
    if len(text) > CARD_MAX_CHARS:
        raise BadInput(f"a card is at most {CARD_MAX_CHARS} characters (this one has {len(text)})")
    return text


def _pattern(key: str) -> re.Pattern[str]:
    key = key.casefold()
    if len(key) >= 5 and key[-1] in _ENDINGS:
        key = key[:-1]
    return re.compile(rf"(?<!\w){re.escape(key)}{_SUFFIX}")


@dataclass(frozen=True)
class Triggered:
    card: Card
    key: str  # the key that was mentioned


def triggered_cards(cards: Sequence[Card], texts: Iterable[str], limit: int = MAX_CARDS_IN_PROMPT) -> list[Triggered]:
    """The cards whose keys appear in `texts` (the pending actions first, then the last turns), in the
    order of their first mention, at most `limit`."""
    haystack = "\n".join(texts).casefold()
    found: list[tuple[int, int, Triggered]] = []
    for card in cards:
        hits = [(m.start(), key) for key in card.keys if (m := _pattern(key).search(haystack))]
        if hits:
            at, key = min(hits)
            found.append((at, card.id, Triggered(card, key)))
    return [t for _, _, t in sorted(found, key=lambda f: f[:2])][:limit]


def mentions(actions: Sequence[Action], extra: str, turns: Sequence[Turn], recent: int = MENTION_TURNS) -> list[str]:
    """Where a card's key counts as mentioned: the pending actions (as written and as translated), the
    direction for the DM, then the last turns, newest first."""
    texts = [t for a in actions for t in dict.fromkeys((a.text, a.written))] + [extra]
    for turn in reversed(turns[-recent:] if recent else []):
        texts += [a.text for a in turn.actions] + [turn.narration]
    return texts
