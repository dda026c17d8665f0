"""What the model wrote, made fit to post: no lines where it plays the players, no half sentence where
it ran out of tokens, no mention that could ever ping (in any language: applied to translations too)."""
from __future__ import annotations

import re
import unicodedata

ZWSP = "\u200b"  # between "@" and "everyone" Discord sees plain text
_MASS = re.compile(r"@(everyone|here)\b", re.IGNORECASE)
_USER_OR_ROLE = re.compile(r"<@[!&]?\d+>")
# A sentence ends at . ! ? … (also 。！？), optionally followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'»”’)\]*_]*(?=\s|$)")


def visible(text: str) -> bool:
    """Whether text shows anything: zero-width, format and control characters and spaces do not."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp")
               for c in text or "")


def clean_narration(text: str, player_names: set[str]) -> str:
    """The narration without lines where the model plays the players (or itself) again: a player's
    line at the very start is dropped, and everything from the next speaker's line on is cut."""
    text = re.sub(r"^\s*DM\s*:\s*", "", text.strip())
    names = "|".join(re.escape(n) for n in player_names if n)
    if names:
        player_line = re.compile(rf"^\s*({names})\s*:[^\n]*(\n|$)")
        while match := player_line.match(text):
            text = text[match.end():]
    speakers = "|".join(re.escape(n) for n in {"DM", *player_names} if n)
    match = re.compile(rf"^\s*({speakers})\s*:", re.MULTILINE).search(text, 1)
    if match:
        text = text[: match.start()]
    return re.sub(r"^\s*DM\s*:\s*", "", text.strip()).strip()


def whole_sentences(text: str) -> str:
    """The text up to its last complete sentence: a reply cut by max_new_tokens ends mid-sentence
    ("...it might actually"). Kept as it is when no sentence ends at all (better a fragment than nothing)."""
    text = text.rstrip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends or ends[-1].end() == len(text):
        return text
    return text[: ends[-1].end()]


def defuse_mentions(text: str) -> str:
    """@everyone, @here, <@id>, <@!id> and <@&id> as plain text. Allowed mentions are off anyway; this
    keeps generated text one config slip away from nothing, and shows no mention pill either."""
    text = _MASS.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    return _USER_OR_ROLE.sub(lambda m: "@" + ZWSP + ("role" if "&" in m.group(0) else "someone"), text)
