"""What the story keeps of a narration, decided as it streams: the table never reads a sentence that the
story then drops, beyond the one still being written.

One function for the text so far and for the whole text (`kept`), so the stream and the saved turn cannot
disagree: the model's lines are taken a sentence at a time, in order; a sentence is judged once the next
one has begun (a bare quote is a player's line when "Bram asks." follows it), and what the table sees ends
at the last sentence end. The cleaning of engine/table/narration.py says what is dropped; this module
says when.
"""
from __future__ import annotations

import re

from engine.table.narration import _LIST_MARK, _faults, echo_at, _names, _outside, defuse_mentions, visible, whole_sentences
from engine.game.markers import hidden
from engine.text import SENTENCE_END

_LIST_NUMBER = re.compile(r"\n\s*\d+[.)]\s*$")  # a list's next number, alone on the last line
_DM_PREFIX = re.compile(r"^\s*(?:DM|Dungeon\s+Master)\s*:\s*", re.IGNORECASE)


def kept(text: str, player_names: set[str], *, final: bool) -> str:
    """The narration as the table sees it and the story keeps it: the DM's lines only (a leading player's
    line dropped, everything from the next speaker's line, an echoed header or a script label on cut),
    its sentences in the DM's voice, up to the last sentence end, mentions defused.

    With `final`, the text is whole: a last sentence counts without a successor, and when nothing in the
    DM's voice remains the text is kept as the model wrote it (better a narration in the wrong voice than
    a lost turn; nothing was shown of it while it streamed). Without it, the text is still being written.
    """
    text = _DM_PREFIX.sub("", text.lstrip(), count=1)
    names = _names(player_names)
    speaker = re.compile(rf"^\s*{_LIST_MARK}({names})[*_]*\s*:") if names else None
    lines = text.split("\n")
    out: list[str] = []  # the kept lines, each its kept sentences joined by a space
    raw: list[str] = []  # the lines before any cut, as written (for the fallback)
    for index, line in enumerate(lines):
        complete = final or index < len(lines) - 1
        echo = echo_at(line)
        if echo is not None:
            line, complete = line[:echo], True
        is_speaker = bool(speaker and speaker.match(line)) or bool(_DM_PREFIX.match(line) and index)
        if is_speaker and any(visible(kept_line) for kept_line in out):
            break  # the model plays the next speaker: the narration ends here
        if is_speaker or not complete and speaker and _may_become_speaker(line, player_names):
            if not complete:
                break
            if not raw:  # the first speaker's line is all the fallback keeps of them
                raw.append(line)
            continue  # a player's line before the narration starts
        judged = _faults(line, player_names)
        if not complete:  # the last sentence is being written; a bare quote before it waits for its start
            judged = judged[:-1]  # ("Bram says." after it makes the quote a player's line)
            if judged and not _outside(judged[-1][0]).strip(" .,!?…"):
                judged = judged[:-1]
        out.append(" ".join(s for s, bad in judged if not bad) if judged or complete else "")
        raw.append(line)
        if echo is not None or not complete:
            break
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    # Up to the last sentence end; a whole reply without any is kept as it is (a fragment beats nothing).
    result = _LIST_NUMBER.sub("", whole_sentences(result) if final else _to_last_sentence_end(result))
    if final and not _words(result):  # nothing in the DM's voice: the model's first lines as written
        result = _LIST_NUMBER.sub("", whole_sentences("\n".join(raw).strip()))
    return defuse_mentions(result) if _words(result) else ""


def _words(text: str) -> bool:
    return any(char.isalpha() for char in text)


def _may_become_speaker(line: str, player_names: set[str]) -> bool:
    """Whether a line still being written could turn out to be a player's line ("Br" of "Bram: ...")."""
    written = re.sub(rf"^\s*{_LIST_MARK}", "", line).rstrip("*_ ")
    return any((name + ":").startswith(written) for name in player_names if name)


def _to_last_sentence_end(text: str) -> str:
    ends = list(SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else ""


def posted_narration(text: str, player_names: set[str]) -> str:
    """A whole narration as the table sees it and the story keeps it (see `kept`)."""
    return kept(text, player_names, final=True)


def stream_view(player_names: set[str]):
    """What the table is shown of a narration still being written: the same cleaning, its finished part, and
    never a marker (engine/game/markers.py), not even the start of one."""
    async def view(text: str) -> str:
        return kept(hidden(text), player_names, final=False)  # no marker, nor the start of one
    return view
