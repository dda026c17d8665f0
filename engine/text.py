"""Text helpers every wing may use: where a sentence ends, pieces cut there, and the words too common to
search by."""
from __future__ import annotations

import re

# What ends a sentence, for every wing that cuts text at sentences (narration, memory, translation): its
# marks, then any closing quotes, brackets or emphasis, then a space or the end.
END_MARKS = ".!?…。！？"
CLOSERS = "\"'»”’)]*_"
SENTENCE_END = re.compile(rf"[{re.escape(END_MARKS)}]+[{re.escape(CLOSERS)}]*(?=\s|$)")
_LINE_BREAK = re.compile(r"\n+")
# Quoted speech (an "I" inside is a character's, not the narrator's): opening mark -> the marks that close
# it. A single quote opens only at a word's start and closes only at a word's end, so apostrophes
# ("don't", "the guards' hall") are no quotes.
QUOTES = {'"': '"', "“": "”", "«": "»", "„": "“”", "'": "'", "‘": "’'"}
_SINGLE = "'‘’"
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves let lets us go goes went get gets got one also still yet
into onto upon ask asks asked tell tells told say says said see sees saw look looks looked try tries tried
""".split())


def _scan_quotes(line: str) -> tuple[list[bool], str]:
    """For each character, whether it is quoted (marks included), and the marks that would close the
    quote still open at the end ("" when none is). A quote left open runs to the end of the line; a
    closing mark without an opening one is ignored."""
    inside, closing = [], ""
    for i, char in enumerate(line):
        before = line[i - 1] if i else " "
        after = line[i + 1] if i + 1 < len(line) else ""
        if closing:
            inside.append(True)
            if char in closing and not (char in _SINGLE and after.isalnum()):
                closing = ""
        elif char in QUOTES and not (char in _SINGLE and (before.isalnum() or after and not after.isalnum())):
            inside.append(True)
            closing = QUOTES[char]
        else:
            inside.append(False)
    return inside, closing


def quoted(line: str) -> list[bool]:
    """For each character of a line, whether it is quoted speech, marks included."""
    return _scan_quotes(line)[0]


def inside_quotes(text: str) -> bool:
    """Whether the text, as written so far, ends inside quoted speech opened on its last line."""
    return bool(_scan_quotes(text[text.rfind("\n") + 1:])[1])


def sentences(text: str) -> list[str]:
    """The text cut after each sentence end and at line breaks (the pieces keep their own spaces)."""
    out: list[str] = []
    for line in _LINE_BREAK.split(text):
        start = 0
        for end in SENTENCE_END.finditer(line):
            out.append(line[start:end.end()])
            start = end.end()
        out.append(line[start:])
    return out


def chunk_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends where possible, words kept whole."""
    pieces: list[str] = []
    current = ""
    for sentence in (s.strip() for s in sentences(text)):
        if not sentence:
            continue
        while len(sentence) > limit:  # one overlong sentence: cut at the last space before the limit
            if current:  # what came before goes first: pieces stay in the story's order
                pieces.append(current)
                current = ""
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces
