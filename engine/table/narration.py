"""What the model wrote, made fit to post: no lines where it plays the players, no half sentence where
it ran out of tokens, the DM's voice (no sentence told in the first person outside quoted dialogue,
none that speaks for a player), no mention that could ever ping (in any language: applied to
translations too)."""
from __future__ import annotations

import re
import unicodedata

from engine.text import QUOTES, SENTENCE_END, quoted

ZWSP = "\u200b"  # between "@" and "everyone" Discord sees plain text
_MASS = re.compile(r"@(everyone|here)\b", re.IGNORECASE)
_USER_OR_ROLE = re.compile(r"<@[!&]?\d+>")
# A sentence ends at . ! ? … (also 。！？), optionally followed by closing quotes or brackets.
_LIST_MARK = r"[*_]*(?:\d+[.)]\s*)?[*_]*"  # what may stand before a speaker's name: markup, a list number


def visible(text: str) -> bool:
    """Whether text shows anything: zero-width, format and control characters and spaces do not."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp")
               for c in text or "")


def clean_narration(text: str, player_names: set[str]) -> str:
    """The narration without lines where the model plays the players (or itself) again: a player's
    line at the very start is dropped, and everything from the next speaker's line on is cut."""
    text = re.sub(r"^\s*DM\s*:\s*", "", text.strip())
    names = _names(player_names)
    if names:  # "Bram: ...", also "**Bram:**" and a numbered "1. Bram: ..."
        player_line = re.compile(rf"^\s*{_LIST_MARK}({names})[*_]*\s*:[^\n]*(\n|$)")
        while match := player_line.match(text):
            text = text[match.end():]
    speakers = "|".join(re.escape(n) for n in {"DM", *player_names} if n)
    match = re.compile(rf"^\s*{_LIST_MARK}({speakers})[*_]*\s*:", re.MULTILINE).search(text, 1)
    if match:
        text = text[: match.start()]
    return re.sub(r"^\s*DM\s*:\s*", "", text.strip()).strip()


def whole_sentences(text: str) -> str:
    """The text up to its last complete sentence: a reply cut by max_new_tokens ends mid-sentence
    ("...it might actually"). Kept as it is when no sentence ends at all (better a fragment than nothing)."""
    text = text.rstrip()
    ends = list(SENTENCE_END.finditer(text))
    if not ends or ends[-1].end() == len(text):
        return text
    return text[: ends[-1].end()]


def ends_at_sentence(text: str) -> bool:
    """Whether the text ends where a sentence ends (closing quotes and brackets after it allowed)."""
    text = text.rstrip()
    return any(end.end() == len(text) for end in SENTENCE_END.finditer(text))


def defuse_mentions(text: str) -> str:
    """@everyone, @here, <@id>, <@!id> and <@&id> as plain text. Allowed mentions are off anyway; this
    keeps generated text one config slip away from nothing, and shows no mention pill either."""
    text = _MASS.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    return _USER_OR_ROLE.sub(lambda m: "@" + ZWSP + ("role" if "&" in m.group(0) else "someone"), text)


# --- the DM's voice: second or third person, never a player's lines -----------------------------
# "mine" is left out: far more often a mine than a possession in a fantasy story.
_FIRST_PERSON = re.compile(r"(?<![\w'’])(?:I|(?i:me|my|myself|we|us|our|ours|ourselves))(?!\w)")
_NUMERAL = re.compile(r"(?<=\w )[A-Z][\w'’-]* I(?![\w'’])")  # "King Thoros I", not "Then I"
_SPEECH = ("say|says|said|ask|asks|asked|reply|replies|replied|answer|answers|answered|shout|shouts|shouted|"
           "whisper|whispers|whispered|yell|yells|yelled|mutter|mutters|muttered|exclaim|exclaims|exclaimed|"
           "add|adds|added|call|calls|called|cry|cries|cried")


def _outside(line: str) -> str:
    """The line with what is quoted blanked out (same length, so positions still match)."""
    return "".join(" " if q else c for c, q in zip(line, quoted(line)))


def _spans(line: str) -> list[tuple[int, int]]:
    """Where the line's sentences are. A sentence ends at . ! ? … outside quotes, or at one that
    closes a quote when a new sentence starts after it ('"Run!" The torch gutters.'; '"Run!" she
    cries.' is one sentence); what follows the last end is one more. A list's numbers ("1.") start a sentence."""
    inside, cuts = quoted(line), [0]
    for end in SENTENCE_END.finditer(line):
        closes = end.end() == len(line) or not inside[end.end()]
        rest = line[end.end():].lstrip()
        if re.fullmatch(r"[\d.\s]+", line[cuts[-1]:end.start()]):  # "1." or the model's "12. 7."
            continue
        if not inside[end.start()] or (closes and (not rest or rest[0].isupper() or rest[0] in QUOTES)):
            cuts.append(end.end())
    cuts.append(len(line))
    spans = []
    for a, b in zip(cuts, cuts[1:]):
        while a < b and line[a].isspace():
            a += 1
        while b > a and line[b - 1].isspace():
            b -= 1
        if a < b:
            spans.append((a, b))
    return spans


def sentences(text: str) -> list[list[str]]:
    """The text's paragraphs (its lines), each a list of its sentences."""
    return [[line[a:b] for a, b in _spans(line)] for line in text.splitlines()]


def _first_person(bare: str) -> bool:
    return bool(_FIRST_PERSON.search(_NUMERAL.sub(lambda m: m.group(0)[:-1] + " ", bare)))


def first_person(sentence: str) -> bool:
    """Whether a sentence is told in the first person outside quoted dialogue ("I", "my", "we", ...)."""
    return _first_person(_outside(sentence))


# Words that show the model echoing its prompt or writing a script instead of a narration: from there on
# nothing is the DM's ("Player: You are the Dungeon Master of ...", "What the players do now:").
_HEADERS = ("You are the Dungeon Master", "What the players do now", "The story so far:", "Things to remember:",
            "Author's note:", "The campaign:", "Story cards:", "Recalled memories:")
_LABELS = r"(?:Players?|Dungeon(?:\s+Master)?|DM|GM|Game\s+Master|User|Assistant|System|Narrator|Human|AI)"
_LABEL = re.compile(rf"^\s*(?:\([^)\n]{{0,40}}\)\s*)?{_LIST_MARK}{_LABELS}[*_]*\s*:", re.IGNORECASE)


def echo_at(line: str) -> int | None:
    """Where a line starts echoing the prompt or a script label ("Player:", "Dungeon:"); None when it does not."""
    if _LABEL.match(line):
        return 0
    found = [i for i in (line.find(h) for h in _HEADERS) if i >= 0]
    return min(found) if found else None


_CLOSING_QUOTE = f"[{re.escape(''.join(QUOTES.values()))}]"


def _names(player_names: set[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(player_names, key=len, reverse=True) if n.strip())


def _player_line(sentence: str, bare: str, names: str) -> bool:
    if not names:
        return False
    if re.match(rf"\s*{_LIST_MARK}({names})[*_]*\s*:", sentence):
        return True
    # 'Bram says, "..."', or '"...," whispers Ilsa' (the verb right after the quote: "calls Ilsa over" is
    # someone calling her)
    return bare != sentence and bool(
        re.search(rf"\b({names})\b(\s+\w+ly)?\s*,?\s+({_SPEECH})\b", bare)
        or re.search(rf"{_CLOSING_QUOTE}\s*,?\s*({_SPEECH})\s+({names})\b", sentence))


def player_line(sentence: str, player_names: set[str]) -> bool:
    """Whether a sentence speaks for a player: "Name: ..." or a quote the narration gives a player
    ('Bram says, "..."', '"...," Ilsa whispers')."""
    return _player_line(sentence, _outside(sentence), _names(player_names))


def _faults(line: str, player_names: set[str]) -> list[tuple[str, bool]]:
    """The line's sentences, each with whether it leaves the DM's voice. A quote on its own followed
    by "Bram asks." is a player's line too (both sentences)."""
    bare, names = _outside(line), _names(player_names)
    spans = _spans(line)
    echo = echo_at(line)
    faults = [_first_person(bare[a:b]) or _player_line(line[a:b], bare[a:b], names) or echo is not None and b > echo
              for a, b in spans]
    for i in range(1, len(spans)):
        (a0, b0), (a, b) = spans[i - 1], spans[i]
        if names and re.match(rf"({names})\b(\s+\w+ly)?\s+({_SPEECH})\b", line[a:b]) \
                and not bare[a0:b0].strip(" .,!?…"):
            faults[i - 1] = faults[i] = True
    return [(line[a:b], bad) for (a, b), bad in zip(spans, faults)]


def voice_faults(text: str, player_names: set[str]) -> list[str]:
    """The sentences of a narration that leave the DM's voice: told in the first person outside
    quotes, speaking a player's line, or echoing the prompt or a script label. Empty when the narration
    keeps the voice."""
    return [s for line in text.splitlines() for s, bad in _faults(line, player_names) if bad]


def keep_voice(text: str, player_names: set[str]) -> str:
    """The narration without its sentences in the first person or in a player's voice, its lines and
    blank lines otherwise as they were; kept as it is when nothing else would remain (better a
    narration in the wrong voice than none)."""
    lines, dropped = [], False
    for line in text.splitlines():
        judged = _faults(line, player_names)
        dropped = dropped or any(bad for _, bad in judged)
        good = [s for s, bad in judged if not bad]
        if good or not judged:
            lines.append(" ".join(good))
    if not dropped:
        return text
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return result if visible(result) else text

