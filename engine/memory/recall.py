"""Hybrid recall: what the players do now finds what the story holds, by meaning and by words.

Each query (one per pending action, the /dm continue direction, and, weaker, the end of the last
narration) scores the campaign's entries by cosine similarity of embeddings; its distinctive words
(names, numbers, words outside everyday vocabulary) find entries by BM25 in SQLite FTS5, so a ship
called "Marigold" is found even where the embedding does not care about names. An entry's score is
its best weighted similarity to any query, less that query's similarity to the campaign's mean entry (its
baseline: an everyday clause is alike to every ordinary turn), plus a bonus for the words it shares with
one (max-score fusion: measured on bench/memory.py, reciprocal rank fusion let any second, weak vote outrank the
one query that had the entry first). Entries found by words take at most about half the slots;
near-duplicates never take two; top_k remain.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from engine.records import Action, Memory, Turn
from engine.text import STOPWORDS

TAIL_WEIGHT = 0.3      # the end of the last narration is a weaker query than anything a player wrote
TAIL_CHARS = 300
WORDS_BONUS = 1.0      # added for the best BM25 match of a query's distinctive words (scaled by BM25): a name
                       # the player just used outranks any likeness, up to word_slots()

OWN_BONUS = 0.1       # added to a player's own entries when that player speaks of "my ..." (replays of 14
                       # bench/memory.py campaigns: 153 of 168 facts, 150 without; at 0.05, 152)
_OWN = re.compile(r"\b(my|mine|our|ours)\b", re.IGNORECASE)
NEAR_DUPLICATE = 0.92  # cosine above which two texts say the same thing: only one takes a slot
MAX_QUERIES = 24
MAX_WORDS = 6          # the rarest words of a query that go to FTS5
COMMON_SHARE = 0.05    # a word in more than this share of the campaign's entries is not rare,
RARE_MAX = 500         # nor one in more than this many (and counting stops there: a name in 20,000
                       # entries of 100,000 would cost a millisecond and more to count in full)
WORDS_RELATIVE = 0.5   # a hit by words counts when its BM25 is at least this share of the query's best
CLAUSE_WORDS = 3       # a clause shorter than this ("I nod") says too little to search with
_CLAUSE = re.compile(r"[,;:.!?]+\s+|\s+(?:and|but|or|whether|while|because|so|then)\s+", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_NAME = re.compile(r"(?<![.!?…:;\"«(\n])(?<=\S)\s+([A-Z][\w'-]*\w)")  # a capitalised word not opening a sentence


@dataclass(frozen=True)
class Query:
    text: str
    weight: float = 1.0
    in_prompt: bool = False  # text the prompt holds already (the last narration): its copies are not recalled,
                             # and its own words would only find it again, so it searches by meaning only
    by_words: bool = True    # False for a clause of a query whose words are searched already
    speaker: str | None = None  # the player who wrote it


@dataclass(frozen=True)
class Recalled:
    memory: Memory
    score: float | None  # the fused score that ranked it; None for pinned facts, which always come
    similarity: float | None = None  # its best cosine against the turn's queries
    words: tuple[str, ...] = ()  # the rare words it shares with them


def owners(queries: Sequence[Query]) -> set[str]:
    """Players who speak of something of their own ("my vessel", "my sister"): what they call theirs they
    most likely set up themselves, so their own entries get OWN_BONUS."""
    return {q.speaker for q in queries if q.speaker and _OWN.search(q.text)}


def word_slots(top_k: int) -> int:
    """How many of top_k slots entries found by words may take: the rest stay for meaning."""
    return max(1, (top_k + 1) // 2)


def turn_queries(actions: Sequence[Action], extra: str, turns: Sequence[Turn], chunk) -> list[Query]:
    """What recall searches with: each action (without the speaker's name, which would match every
    entry of that player) and the direction, then their clauses, then the end of the last narration,
    weaker."""
    pieces = ([(piece, a.author_name) for a in actions for piece in chunk(a.text)]
              + [(piece, None) for piece in chunk(extra)])[-(MAX_QUERIES - 1):]
    queries = [Query(piece, speaker=who) for piece, who in pieces]
    parts = [Query(part, by_words=False, speaker=who) for piece, who in pieces for part in clauses(piece)]
    queries += parts[: MAX_QUERIES - 1 - len(queries)]  # the newest whole pieces first, clauses as room allows
    tail = turns[-1].narration[-TAIL_CHARS:].strip() if turns else ""
    if tail:
        queries.append(Query(tail, TAIL_WEIGHT if queries else 1.0, in_prompt=True))
    return queries


def clauses(text: str) -> list[str]:
    """The parts of an action that say one thing each ("I ask the harbourmaster" / "my vessel is ready to
    sail"), if it has more than one: a whole sentence's embedding blurs its parts, and the part that
    matters may be the shorter one (measured on bench/memory.py: the ship a player asked about rose from
    6th to 2nd)."""
    parts = [p.strip() for p in _CLAUSE.split(text)]
    parts = [p for p in parts if len(p.split()) >= CLAUSE_WORDS]
    return parts if len(parts) > 1 else []


def fold(word: str) -> str:
    """A word as FTS5's unicode61 tokenizer (remove_diacritics 2) keeps it."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def content_words(text: str) -> list[str]:
    """The words worth matching literally: no stopwords, nothing shorter than 3 letters but numbers."""
    found = (fold(w) for w in _WORD.findall(text))
    return list(dict.fromkeys(w for w in found if w not in STOPWORDS and (len(w) >= 3 or w.isdigit())))


def distinctive_words(text: str, common: frozenset[str] | None) -> list[str]:
    """The content words that single something out: numbers, names (capitalised inside a sentence) and
    words outside `common`, the everyday vocabulary the embedder knows whole. Everyday words ("name",
    "horse") are left to the embedding, which knows them well; matching them literally only crowds out
    what the embedding found."""
    names = {fold(m.group(1)) for m in _NAME.finditer(text)}
    return [w for w in content_words(text)
            if w.isdigit() or any(c.isdigit() for c in w) or w in names or (common is not None and w not in common)]


def relative_scores(vectors: np.ndarray, queries: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """Each entry's best (weighted) similarity to any query, less that query's baseline: its similarity to
    the campaign's mean entry. A short, everyday clause ("I kneel by the iron chest", "I go to the
    stable") is 0.3-0.5 alike to every ordinary action of the story, and a clause that names what is asked
    for ("open its lock with the digits we were given") is alike to little but its fact: compared raw, the
    everyday clause's ordinary turns took every slot (bench/memory.py, second campaign: the strongbox's
    code stood 10th behind nine ordinary actions; 2nd against each clause's baseline)."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.float32)
    product = vectors @ queries.T
    if baseline is not None:
        product = product - baseline[None, :]
    return product.max(axis=1)


def word_bonus(hits: Sequence[tuple[int, float]]) -> dict[int, float]:
    """A bonus per BM25 hit, the best one getting WORDS_BONUS; hits well below the best get none: an entry
    sharing only a lesser word with the query (a "sail" beside the "Marigold" it asked about) is no find."""
    best = max((score for _, score in hits), default=0.0)
    return {memory_id: WORDS_BONUS * score / best for memory_id, score in hits if score >= WORDS_RELATIVE * best}


def rare_limit(entries: int) -> int:
    """The most entries a word may be in and still count as rare, in a campaign of `entries`."""
    return min(RARE_MAX, max(2, int(COMMON_SHARE * entries)))


def rare_words(words: Iterable[str], counts: dict[str, int], entries: int) -> list[str]:
    """The rarest of `words` in the store, leaving out those too common to single anything out."""
    limit = rare_limit(entries)
    known = [w for w in words if 0 < counts.get(w, 0) <= limit]  # an unknown word matches nothing
    return sorted(known, key=lambda w: counts[w])[:MAX_WORDS]
