"""Discord text taken apart for a translator and put together again.

Machine translation breaks markdown (SillyTavern users see Russian translation eat asterisks and
quotes), mentions, links and names. So before translation every such piece becomes a numbered
placeholder that translators leave alone, and afterwards the placeholders become the pieces again.
Text is also cut into sentences, so narration can be translated while it streams.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.text import CLOSERS, END_MARKS

OPEN, CLOSE = "⟦", "⟧"
_PLACEHOLDER = re.compile(rf"{OPEN}\s*(\d+)\s*{CLOSE}")
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)  # a code block, even one still being written
# Kept word for word: inline code, Discord mentions / channels / roles / emoji / timestamps, links
# (without the punctuation or markup that ends the sentence around them), @everyone, :shortcodes:.
_VERBATIM = re.compile(
    r"`[^`\n]+`|<(?:@[!&]?|#)\d+>|<a?:\w+:\d+>|<t:-?\d+(?::[tTdDfFR])?>|<https?://[^\s>]+>|https?://[^\s<]*[^\s<.,;:!?)\]'»”*_~|\"]"
    r"|@(?:everyone|here)\b|:[a-z0-9_+-]+:"
)
# Markup kept in place while the words around it are translated.
_MARKS = re.compile(
    r"^(?:>>> |> |-# |#{1,3} |[-*] )|\*{1,3}|(?<!\w)_{1,2}|_{1,2}(?!\w)|~~|\|\||[\"«»„“”]",
    re.MULTILINE,
)
# A sentence ends at . ! ? or … (with any closing quotes or marks) before a space, or at a line end.
_BREAK = re.compile(rf"(?<=[{re.escape(END_MARKS)}])([{re.escape(CLOSERS)}~|]*)([ \t]+)|[ \t]*\n\s*")
# Code, where no sentence ends: inline code, and (in growing text) inline code not closed yet.
_INLINE = re.compile(r"`[^`\n]+`")
_CODE = re.compile(r"```.*?```|`[^`\n]+`|`[^`\n]*\Z", re.DOTALL)


@dataclass(frozen=True)
class Masked:
    text: str  # what the translator sees
    pieces: tuple[str, ...]  # what each placeholder stands for, in the translated text
    marks: frozenset[int]  # placeholders that are only markup (dropped if the translator lost them)


def mask(text: str, terms: dict[str, str] | None = None) -> Masked:
    """Placeholders for verbatim pieces, glossary terms (restored as their translation) and markup."""
    pieces: list[str] = []
    marks: set[int] = set()

    def hold(piece: str, is_mark: bool = False) -> str:
        pieces.append(piece)
        if is_mark:
            marks.add(len(pieces) - 1)
        return f"{OPEN}{len(pieces) - 1}{CLOSE}"

    text = _VERBATIM.sub(lambda m: hold(m.group(0)), text)
    if terms:
        # Longest first, whole words only, so "Bram" inside "Brambles" stays a word to translate.
        names = sorted((t for t in terms if t.strip()), key=len, reverse=True)
        lookup = {name.casefold(): terms[name] for name in names}
        pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)
        text = pattern.sub(lambda m: hold(lookup[m.group(0).casefold()]), text) if names else text
    text = _MARKS.sub(lambda m: hold(m.group(0), True), text)
    return Masked(text, tuple(pieces), frozenset(marks))


def unmask(translated: str, masked: Masked) -> str:
    """The translation with its placeholders replaced; pieces the translator lost are appended
    (a mention or a link must not vanish), lost markup is dropped rather than left unbalanced."""
    seen: set[int] = set()

    def put(match: re.Match) -> str:
        number = int(match.group(1))
        if number >= len(masked.pieces):
            return ""
        seen.add(number)
        return masked.pieces[number]

    text = _PLACEHOLDER.sub(put, translated)
    lost = [masked.pieces[i] for i in range(len(masked.pieces)) if i not in seen and i not in masked.marks]
    return " ".join([text.rstrip(), *lost]) if lost else text


@dataclass(frozen=True)
class Piece:
    text: str  # a sentence, or a code block
    gap: str  # the whitespace after it, kept as it was
    verbatim: bool = False  # a code block: never translated


def pieces(text: str) -> list[Piece]:
    """The text as sentences and code blocks; joining text+gap of all pieces gives it back exactly."""
    out: list[Piece] = []
    start = 0
    for fence in _FENCE.finditer(text):
        out += _sentences(text[start:fence.start()])
        out.append(Piece(fence.group(0), "", verbatim=True))
        start = fence.end()
    out += _sentences(text[start:])
    return [p for p in out if p.text or p.gap]


def paragraphs(parts: list[Piece], limit: int) -> list[Piece]:
    """Consecutive sentences of one paragraph joined, up to `limit` characters: a translator given
    whole paragraphs sees what "it" and "she" refer to. Code blocks and line ends still divide."""
    out: list[Piece] = []
    for piece in parts:
        last = out[-1] if out else None
        if (last is not None and not last.verbatim and not piece.verbatim and "\n" not in last.gap
                and len(last.text) + len(last.gap) + len(piece.text) <= limit):
            out[-1] = Piece(last.text + last.gap + piece.text, piece.gap)
        else:
            out.append(piece)
    return out


def _sentences(text: str) -> list[Piece]:
    code = [m.span() for m in _INLINE.finditer(text)]
    out, start = [], 0
    for match in _BREAK.finditer(text):
        if any(a < match.start() < b for a, b in code):
            continue
        end = match.start() + len(match.group(1) or "")
        out.append(Piece(text[start:end], text[end:match.end()]))
        start = match.end()
    out.append(Piece(text[start:], ""))
    return out


def complete_prefix(text: str) -> int:
    """How much of a text that is still growing holds only finished sentences and code blocks."""
    blocks = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    if text.count("```") % 2:  # a code block still being written: nothing from its start on
        text = text[: blocks.pop()[0]]
    last = max((end for _, end in blocks), default=0)
    code = [m.span() for m in _CODE.finditer(text)]
    for match in _BREAK.finditer(text):
        if not any(start < match.start() < end for start, end in code):
            last = max(last, match.end())
    return last
