"""The picture prompt: what a painter needs, not prose about the story. Comma-separated parts like a
Stable Diffusion prompt, in this order: the focus the player asked for, who is there (with their looks
from `/dm look`), the place, the time of day, the light and weather, the mood, the campaign's style.
The main part fits CLIP's 75 tokens; a style too long for its share goes on after it, in the chunk
AUTOMATIC1111 starts past 75 tokens.

The small text model is bad at turning prose into tags, so it is asked one short question it answers
fairly well, where the scene happens; its answer counts only if it names a place the scene does. The
rest (and the place, when the answer is prose) comes from the scene's own words: the latest mention of
night, dawn, a torch, rain... and the people and creatures the latest turn names."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from engine.generation import GenerationSettings
from engine.text import STOPWORDS
from engine.records import Turn
from engine.textgen.base import Prompt

PICTURE_INSTRUCTIONS = "You are a helpful assistant."
PLACE_QUESTION = "Read the story and say where it happens, in a few words.\n\nStory: {scene}"
# Greedy and short: the answer is a phrase. A repetition penalty made the model ramble (tried: 1.2).
PICTURE_SETTINGS = GenerationSettings(max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
CLIP_TOKENS = 75  # what one CLIP chunk holds, start and end tokens aside
STYLE_TOKENS = 20  # the style's share of the main part; more style follows it
PART_TOKENS = 20  # one part longer than this is a sentence: cut to its first words
FOCUS_TOKENS = 35  # the focus is what the player asked for, but not the whole picture


def _words(text: str) -> set[str]:
    return set(text.split())


STOP = STOPWORDS | _words("near across behind beside many every two")  # recall's, and words no adjective is
ADJECTIVES = _words("""old dark cold warm great small vast tall huge grand dim ancient abandoned ruined haunted
    quiet busy empty narrow wide deep high low misty foggy snowy frozen burning flooded sunken hidden
    secret long broken crumbling dusty damp wet gloomy bright golden silver stone wooden iron marble oak
    pine black white red green blue grey gray open lonely sacred forgotten distant massive shadowy
    smoky dingy creaking rotten moonlit sunlit rocky sandy muddy icy grassy mossy stormy wild little""")
PLACES = _words("""tavern inn alehouse cellar kitchen hall library temple shrine chapel church cathedral
    crypt tomb catacombs dungeon prison castle fortress citadel palace tower watchtower lighthouse
    mill windmill village town city market street alley harbor harbour port docks ship deck beach
    shore coast island sea ocean lake river bridge swamp marsh bog forest woods grove clearing jungle
    meadow field farm garden orchard road camp cave cavern caverns mines tunnel sewers canyon valley gorge
    cliff cliffs hill hills mountain mountains peak ridge desert oasis dunes ruins graveyard cemetery
    courtyard stable barn tent mansion manor cottage hut shop forge smithy arena loft attic chamber room
    corridor passage gallery balcony wharf pier quay plaza bazaar monastery abbey sanctum treasury armory
    barracks mausoleum glacier volcano waterfall lagoon plains tundra moor""")
INSIDE = _words("""tavern inn alehouse cellar kitchen hall library temple shrine chapel church cathedral
    crypt tomb catacombs dungeon prison castle fortress citadel palace tower watchtower lighthouse mill
    windmill village town city market street alley harbor harbour port docks swamp marsh bog forest
    woods grove clearing jungle meadow field farm garden orchard camp cave cavern caverns mines tunnel sewers
    canyon valley gorge desert oasis dunes ruins graveyard cemetery courtyard stable barn tent mansion manor
    cottage hut shop forge smithy arena loft attic chamber room corridor passage gallery monastery abbey
    sanctum treasury armory barracks mausoleum""")
FIGURES = _words("""innkeeper barkeep bartender bard minstrel merchant trader smith blacksmith guard guards
    soldier soldiers knight knights king queen prince princess priest priestess monk nun wizard witch
    sorcerer mage druid hunter thief pirate pirates sailor sailors farmer miller child children boy girl
    woman women man men stranger figure crowd villagers traveller traveler beggar noble lord lady captain
    dragon dragons wolf wolves bear horse horses goblin goblins orc orcs troll trolls ogre giant skeleton
    skeletons zombie zombies ghost ghosts demon vampire werewolf rats spider spiders bats raven ravens owl
    serpent snake creature creatures beast monster golem elf elves dwarf dwarves""")
VAGUE = _words("""story scene setting world realm tale place land backdrop environment moment character
    characters narrative atmosphere atmospheric breathtaking evocative dramatic protagonist focus time
    events journey adventure theme themes reader readers""")
# Cue words in the scene -> what the painter is told; the latest cue wins.
TIMES = (("dawn", r"dawn|daybreak|sunrise|first light|sun (?:rises|rose)"), ("morning", r"morning"),
         ("midday", r"noon|midday"), ("afternoon", r"afternoon"),
         ("dusk", r"dusk|sunset|twilight|nightfall|night falls|sun (?:sets|set|dips)"), ("evening", r"evening"),
         ("night", r"night|midnight|moonlit|moonlight|moon|starlight|stars"))
LIGHTS = (("torchlight", r"torch\w*"), ("candlelight", r"candles?|candlelight|candlelit"),
          ("lantern light", r"lanterns?"), ("firelight", r"fire|fires|campfire|hearth|fireplace|embers|flames?"),
          ("moonlight", r"moon|moonlight|moonlit"), ("sunlight", r"sun|sunlight|sunshine|sunlit"),
          ("lightning", r"lightning"), ("magical glow", r"glow\w*|runes?"))
DARK = r"dark|darkness|dim|dimly|gloom\w*|shadows?|shadowy"
WEATHER = (("rain", r"rain\w*|drizzle"), ("storm", r"storm\w*|thunder\w*"), ("snow", r"snow\w*|blizzard"),
           ("mist", r"mist\w*|fog\w*|haze"), ("smoke", r"smok\w*"))
MOODS = {
    "eerie": "haunted ghost ghosts ghostly eerie creak creaks creaking whisper whispers phantom cobwebs",
    "ominous": "dread ominous menacing foreboding doom sinister",
    "mysterious": "mysterious mystery strange secret secrets hidden shrouded enigmatic",
    "tense": "drawn spear sword blade bow guard watch hide hiding danger threat ambush cautiously",
    "grim": "blood bloody corpse dead death bones skull skulls rotten decay",
    "lively": "laughter laughing music sings singing song loud crowded cheer cheers dance dancing busy",
    "cozy": "warm warmly cozy hearth comfortable ale",
    "serene": "calm peaceful quiet gentle serene",
    "majestic": "dragon dragons vast towering majestic glitters glittering",
    "melancholic": "lost forgotten alone lonely sad weeping abandoned",
    "epic": "battle charge army war clash",
}
_MOOD_OF = {word: mood for mood, cues in MOODS.items() for word in cues.split()}
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@dataclass(frozen=True)
class PicturePrompt:
    prompt: str  # for the picture server: the main part, then any style that did not fit in it
    caption: str  # one line for the players: "Turn 12: Bram and Mira at the old mill, night, torchlight"
    main: str  # the main part: at most CLIP_TOKENS by clip_tokens' estimate


@dataclass(frozen=True)
class _Part:
    text: str
    rank: int  # the higher, the sooner it is cut
    kind: str = ""  # what the caption may say about it


def scene_prompt(scene: str) -> Prompt:
    """The one question the text model answers: where the scene happens."""
    return Prompt(PICTURE_INSTRUCTIONS, PLACE_QUESTION.format(scene=scene), f"{scene}\n\nThe scene takes place in")


def clip_tokens(text: str) -> int:
    """A conservative estimate of CLIP's tokens (no CLIP tokenizer offline). CLIP's BPE keeps almost every
    common English word whole; here a word of up to 5 letters is one token and a longer one one more per
    5 letters; a capitalised word (a name, which BPE splits) one per 3 letters; each digit, comma, other
    sign or non-ASCII letter one."""
    count = 0
    for piece in re.findall(r"[A-Za-z]+|\S", text):
        if not (piece.isascii() and piece.isalpha()):
            count += 1
        else:
            count += 1 + (len(piece) - 1) // (3 if piece[0].isupper() else 5)
    return count


def _head_words(text: str, limit: int) -> str:
    """The text's first words within `limit` tokens (a first word too long on its own is cut)."""
    words = text.split()
    while len(words) > 1 and clip_tokens(" ".join(words)) > limit:
        words.pop()
    head = " ".join(words)
    while clip_tokens(head) > limit:
        head = head[:-1]
    return head


def _clean(text: str) -> str:
    """A part as SD reads it best: one line, no sentence marks, no brackets SD would read as weights,
    no markdown."""
    text = re.sub(r"[()\[\]{}<>:|*#~`]", " ", text)
    text = re.sub(r"\s*[.;!?]+\s*", ", ", " ".join(text.split()))
    return text.strip(" ,")


def _parts(text: str) -> list[str]:
    return [p.strip() for p in _clean(text).split(",") if p.strip()]


def _style_parts(style: str) -> list[str]:
    """The style as the campaign wrote it for SD ('(watercolor:1.2)', '<lora:ghibli:0.8>' kept), split
    at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in " ".join(style.split()):
        depth += (char in "([{<") - (char in ")]}>")
        if char == "," and depth <= 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


# --- reading the scene -----------------------------------------------------------------------------
def _segments(turns: Sequence[Turn], premise: str) -> tuple[list[str], list[int]]:
    """What the scene says, oldest first, each with its weight: the premise (the setting the campaign
    was given) and the latest turn count twice, older turns once."""
    texts = [(premise, 2)]
    for turn in turns:
        weight = 2 if turn is turns[-1] else 1
        texts += [(a.text, weight) for a in turn.actions] + [(turn.narration, weight)]
    kept = [(t, w) for t, w in texts if t and t.strip()]
    return [t for t, _ in kept], [w for _, w in kept]


def _phrase(tokens: list[re.Match], i: int, text: str) -> str:
    """The noun at tokens[i] with up to two adjective-like words right before it ('ruined watchtower')."""
    words = [tokens[i].group().lower().removesuffix("'s")]
    j = i - 1
    while j >= 0 and len(words) < 3 and not text[tokens[j].end():tokens[j + 1].start()].strip():
        word = tokens[j].group()
        if word != word.lower() or word in STOP or not (
                word in ADJECTIVES or re.search(r"(ed|en|ing|y|ous|ic|ful)$", word) and len(word) > 3):
            break
        words.insert(0, word)
        j -= 1
    return " ".join(words)


def _nouns(segments: list[str], lexicon: set[str]) -> list[tuple[int, str]]:
    """(segment index, phrase) for every word of `lexicon` in the segments."""
    found = []
    for index, text in enumerate(segments):
        tokens = list(_WORD.finditer(text))
        for i, token in enumerate(tokens):
            if token.group().lower().removesuffix("'s") in lexicon and text[token.end():token.end() + 1] != "-":
                found.append((index, _phrase(tokens, i, text)))
    return found


def _places(segments: list[str], weights: list[int]) -> dict[str, tuple[int, int, str]]:
    """Each place the scene names (by its noun): its weighted mentions, the latest segment naming it,
    and how it was said last with adjectives ('old mill')."""
    places: dict[str, tuple[int, int, str]] = {}
    for index, phrase in _nouns(segments, PLACES):
        head = phrase.split()[-1]
        score, _, said = places.get(head, (0, 0, phrase))
        said = phrase if len(phrase.split()) >= len(said.split()) else said
        places[head] = (score + weights[index], index, said)
    return places


def _answer_place(answer: str, known: set[str]) -> str:
    """The model's answer as a place phrase, or '' when it is prose or names no place (one of PLACES) the
    scene names too."""
    line = answer.strip().split("\n")[0]
    found = re.search(r"\b(?:set|place|happens|unfolds|occurs)\s+(?:(?:in|at|on|inside|within|near|by)\s+)+"
                      r"(?:the\s+(?:confines|edge|heart|depths)\s+of\s+)?(.+)", line, re.IGNORECASE)
    line = found.group(1) if found else re.sub(r"^\s*(?:in|at|on)\s+", "", line, flags=re.IGNORECASE)
    line = re.split(r"[,.;:!?()\"\u2013\u2014-]|\s(?:with|where|which|that|who|filled|surrounded|nestled|as|"
                    r"while|when|of|and the|under|near)\s", line, maxsplit=1)[0]
    words = _WORD.findall(line)
    while words and words[0].lower() in ("a", "an", "the"):
        words.pop(0)
    if not words or len(words) > 5 or VAGUE & set(words) or any(w != w.lower() for w in words):
        return ""  # prose, a name (the model echoing "Ilsa: I ask..."), or nothing a painter can use
    head = words[-1]
    return " ".join(words) if head in known and head in PLACES else ""


def _latest(segments: list[str], cues: Sequence[tuple[str, str]]) -> str:
    """The name of the cue mentioned last in the latest segment that has one."""
    for text in reversed(segments):
        hits = [(m.start(), name) for name, pattern in cues
                for m in re.finditer(rf"\b(?:{pattern})\b", text, re.IGNORECASE)]
        if hits:
            return max(hits)[1]
    return ""


def _moods(segments: list[str], weights: list[int]) -> list[str]:
    counts: dict[str, int] = {}
    for text, weight in zip(segments, weights):
        for word in _WORD.findall(text.lower()):
            if word in _MOOD_OF:
                counts[_MOOD_OF[word]] = counts.get(_MOOD_OF[word], 0) + weight
    ranked = sorted(counts, key=lambda mood: -counts[mood])
    return ranked[:1] + [m for m in ranked[1:2] if counts[m] >= 2]


def _named(text: str, name: str) -> bool:
    return bool(re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text.lower()))


# --- putting it together ------------------------------------------------------------------------------
def compose_picture_prompt(answer: str, *, focus: str, style: str, turns: Sequence[Turn], premise: str,
                           looks: Mapping[str, str]) -> PicturePrompt:
    """The picture prompt from the model's answer about the place and the scene's own words."""
    segments, weights = _segments(turns, premise)
    focused = _Part(_head_words(_clean(focus), FOCUS_TOKENS), 0, "focus")
    parts = [focused, *_subjects(focus, turns, segments, looks), *_setting(answer, segments, weights)]
    kept, style_head, style_tail = _fit(_unique(parts), _style_parts(style))
    main = ", ".join([p.text for p in kept] + style_head)
    prompt = ", ".join(p for p in (main, ", ".join(style_tail)) if p)
    return PicturePrompt(prompt, _caption(turns[-1].number if turns else 0, kept), main)


def _subjects(focus: str, turns: Sequence[Turn], segments: list[str], looks: Mapping[str, str]) -> list[_Part]:
    """Who is there: the looks of the characters named (in the focus first, then the players of the
    latest turns, then anyone with a look the scene names); players without a look as adventurers (SD
    does not know their names); then the people and creatures the latest turn names."""
    actors = [a.author_name for t in reversed(turns) for a in t.actions]
    named = [n for n in looks if any(_named(s, n) for s in segments)]
    names = list(dict.fromkeys([n for n in looks if _named(focus, n)] + actors + named))[:4]
    parts: list[_Part] = []
    for order, name in enumerate(n for n in names if n in looks):
        parts += [_Part(p, 5 if k else 1 if order == 0 else 2, "" if k else f"who:{name}")
                  for k, p in enumerate(_parts(looks[name]))]
    unlooked = [n for n in names if n not in looks]
    if unlooked:
        crowd = ("an adventurer", "two adventurers", "three adventurers", "a group of adventurers")
        parts.append(_Part(crowd[min(len(unlooked), 4) - 1], 4, "who:" + "|".join(unlooked)))
    latest = [t for t in ((turns[-1].narration, *(a.text for a in turns[-1].actions)) if turns else ()) if t]
    figures = list(dict.fromkeys(phrase for _, phrase in _nouns(latest, FIGURES)))[:2]
    return parts + [_Part(p, 5) for p in figures]


def _setting(answer: str, segments: list[str], weights: list[int]) -> list[_Part]:
    """Where (the model's answer when it names a place of the scene, else the place named most, ties:
    the latest), when, the light and weather, the mood."""
    known = {w.lower().removesuffix("'s") for s in segments for w in _WORD.findall(s)}
    places = _places(segments, weights)
    place = _answer_place(answer, known) or (max(places.values())[2] if places else "")
    said = places.get(place.split()[-1], (0, 0, ""))[2] if place else ""
    if len(said.split()) > len(place.split()):
        place = said  # the scene's own "ruined watchtower" beats the model's "watchtower"
    light = _latest(segments, LIGHTS) or ("dim light" if _latest(segments, (("dark", DARK),)) else "")
    return [_Part(place, 2, "place"), _Part(_latest(segments, TIMES), 3, "time"), _Part(light, 4, "light"),
            _Part(_latest(segments, WEATHER), 6, "weather")] + [_Part(m, 7) for m in _moods(segments, weights)]


def _unique(parts: list[_Part]) -> list[_Part]:
    """Parts with text, each said once: a part already inside an earlier one goes."""
    kept: list[_Part] = []
    for part in parts:
        text = part.text.lower()
        if text and not any(re.search(rf"\b{re.escape(text)}\b", k.text.lower()) for k in kept):
            kept.append(part)
    return kept


def _fit(parts: list[_Part], style: list[str]) -> tuple[list[_Part], list[str], list[str]]:
    """The main part within CLIP_TOKENS: the style's first STYLE_TOKENS are reserved, the scene's least
    important parts are cut until the rest fits, then as much more style as fits. Returns the scene's
    parts kept, the style inside the main part, and the rest of the style to follow it."""
    parts = [p if clip_tokens(p.text) <= PART_TOKENS or p.rank == 0 else _Part(_head_words(p.text, PART_TOKENS),
             p.rank, p.kind) for p in parts]
    head: list[str] = []
    while style and clip_tokens(", ".join(head + style[:1])) <= STYLE_TOKENS:
        head.append(style.pop(0))
    if not head and style:  # one long style part: its first words inside, the others after
        first = _head_words(style[0], STYLE_TOKENS)
        head, style = [first], [style[0][len(first):].strip()] + style[1:]
    while clip_tokens(", ".join([p.text for p in parts] + head)) > CLIP_TOKENS and len(parts) > 1:
        worst = max(range(len(parts)), key=lambda i: (parts[i].rank, i))
        parts.pop(worst)
    kept = [p.text for p in parts]
    while style and clip_tokens(", ".join(kept + head + style[:1])) <= CLIP_TOKENS:
        head.append(style.pop(0))
    return parts, head, [s for s in style if s]


def _caption(number: int, parts: list[_Part]) -> str:
    """One line of what was painted: who (the focus, or the characters' names), where, when, the light."""
    kinds = {p.kind.split(":")[0]: p.text for p in parts if p.kind}
    who = [n for p in parts if p.kind.startswith("who:") for n in p.kind[4:].split("|")]
    subject = kinds.get("focus") or (", ".join(who[:-1]) + " and " + who[-1] if len(who) > 1 else "".join(who))
    place = kinds.get("place", "")
    if place:
        where = ("in the " if place.split()[-1] in INSIDE else "at the ") + place
        subject = f"{subject} {where}" if subject else where[0].upper() + where[1:]
    line = ", ".join(p for p in (subject, kinds.get("time"), kinds.get("light"), kinds.get("weather")) if p)
    lead = f"Turn {number}" if number else "The opening scene"
    return f"{lead}: {line or 'the scene'}"

