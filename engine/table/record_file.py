"""The campaign as a file: a JSON record that restores it (schema version inside), a Markdown book that reads it.

The JSON holds everything the store keeps about a campaign except memory vectors: an import embeds the memories
anew with the importing bot's embedder, so a file made under one embedder imports under another, and recall
finds the same memories for the same query when the embedder is the same. An import is checked whole before
anything is written (not JSON, an unknown or newer schema, too large, a wrong shape: BadInput, nothing created);
names, card keys and titles lose control characters and template tokens, their mentions are defused and their
length capped; texts lose control characters. Then everything is written in one transaction.

Past an upload limit a file is gzipped, then split into numbered parts (`packed`); `import_json` reads a
gzipped file too.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import re
import time
import unicodedata
import zlib
from typing import Any, Callable

import numpy as np

from engine.errors import BadInput
from engine.game import sheet_from_json
from engine.game.combat import NAME_MAX_CHARS as COMBATANT_NAME_MAX_CHARS, fight_from_json
from engine.game.quests import FIELD_MAX_CHARS, STEP_MAX_CHARS, TITLE_MAX_CHARS
from engine.memory import MemoryBank
from engine.records import Campaign, memory_key
from engine.store import Store
from engine.table.cards import KEY_MAX_CHARS
from engine.table.context import PromptMemory
from engine.table.narration import defuse_mentions
from engine.table.settings import NarratorSettings, PREMISE_MAX_CHARS, campaign_settings, check_text
from engine.textgen.control_tokens import ROLE_MARKERS, neutralise
from engine.generation import GenerationSettings

SCHEMA = 1
KIND = "dungeon-master-campaign"
IMPORT_MAX_BYTES = 20 * 1024 * 1024  # the JSON itself, after any gzip: a 1,000-turn campaign is a few MB
NAME_MAX_CHARS = 80  # a player's, a character's, a speaker's, a look's name
CAMPAIGN_NAME_MAX_CHARS = 100  # a Discord channel's name is at most 100
TERM_MAX_CHARS = 80
EMBED_BATCH = 256  # memories embedded per call to the embedder's worker (each call has the bank's timeout)
SECRET_TEXT = "[a secret roll]"
_TEMPLATE_TOKEN = re.compile(r"<\|[^<>|\n]{0,40}\|>|</?s>")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}")
_MAX_ID = 2**63 - 1
_STATUSES = ("active", "done", "failed")
_DELTAS = {"hp": {"hp": int, "temp": int}, "gold": {"gold": int}, "item": {"item": str, "quantity": int},
           "condition": {"condition": str, "added": bool}}


# --- cleaning what a file says --------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """A text as it was, less its control characters (new lines and tabs stay)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def clean_name(text: str, limit: int = NAME_MAX_CHARS) -> str:
    """A name on one line: no control or format characters (a zero-width joiner inside an emoji aside), no
    template tokens, no mention that could ping, at most `limit` characters."""
    text = "".join(" " if c.isspace() else c for c in text
                   if c.isspace() or c == "\u200d" or unicodedata.category(c) not in ("Cc", "Cf", "Co", "Cs", "Cn"))
    while True:  # taking one token out may join another ("<|im_<|x|>start|>")
        kept = neutralise(_TEMPLATE_TOKEN.sub("", text), ROLE_MARKERS)
        if kept == text:
            break
        text = kept
    text = " ".join(text.split())
    text = defuse_mentions(text)
    return text[:limit].strip()


# --- export -------------------------------------------------------------------------------------------------
async def export_json(store: Store, campaign_id: int, *, secrets: bool = True) -> dict[str, Any]:
    """Everything needed to restore the campaign, as plain JSON values (no memory vectors). Without `secrets`
    a secret roll's dice are not in it: its action (and the memory that repeats it) says only that it was one."""
    found = await store.campaign_record(campaign_id)
    if found is None:
        raise BadInput(f"there is no campaign {campaign_id}")
    campaign: Campaign = found.pop("campaign")
    hidden: set[tuple[str, str]] = set()
    if not secrets:
        for action in [a for t in found["turns"] for a in t["actions"]] + found["pending"]:
            if action["secret"]:
                hidden.add((action["author_name"], action["text"]))
                action.update(text=SECRET_TEXT, original=None)
        for memory in found["memories"]:
            if (memory["speaker"], memory["text"]) in hidden:
                memory["text"] = SECRET_TEXT
        shown = {f"{name}: {text}" for name, text in hidden}  # as a turn's context shows a recalled entry
        for turn in found["turns"]:
            for entry in [e for key in ("pinned", "recalled") for e in (turn["context"] or {}).get(key, [])]:
                if isinstance(entry, dict) and entry.get("text") in shown:
                    entry["text"] = SECRET_TEXT
    return {
        "schema": SCHEMA, "kind": KIND, "exported": time.time(), "secrets": secrets or not hidden,
        "campaign": {"name": campaign.name, "premise": campaign.premise, "style": campaign.style,
                     "language": campaign.language, "settings": campaign.settings, "created": campaign.created,
                     "active": campaign.active, "summarised_to": found.pop("summarised_to")},
        **{key: found[key] for key in ("turns", "pending", "players")},
        "sheets": [{"author_id": s["author_id"], "sheet": json.loads(s["data"]), "updated": s["updated"]}
                   for s in found["sheets"]],
        "fight": None if found["fight"] is None else json.loads(found["fight"]),
        **{key: found[key] for key in ("quests", "cards", "looks", "glossary", "memories")},
    }


def dumps(record: dict[str, Any]) -> bytes:
    """The record as the file's bytes: UTF-8, one level of indentation (readable, and gzip takes the rest)."""
    return json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")


async def export_markdown(store: Store, campaign_id: int, *, secrets: bool = True) -> str:
    """The campaign as a book: its title and premise, each turn (who did what, their rolls, the DM's narration
    in the players' language, what the DM's markers did), then the party, quests, story cards and pinned facts."""
    record = await export_json(store, campaign_id, secrets=secrets)
    return markdown(record)


def markdown(record: dict[str, Any]) -> str:
    about = record["campaign"]
    out = [f"# {about['name']}", ""]
    if about["premise"]:
        out += [f"*{about['premise']}*", ""]
    started = time.strftime("%Y-%m-%d", time.gmtime(about["created"]))
    out += [f"Started {started} · {len(record['turns'])} turns · language: {about['language']}"
            + ("" if about.get("active", True) else " · ended"), ""]
    for turn in record["turns"]:
        out += [f"## Turn {turn['number']}", ""]
        out += [f"- **{a['author_name']}**: {_one_line(_written(a))}" for a in turn["actions"]]
        if turn["actions"]:
            out.append("")
        out += [(turn["shown"] if turn["shown"] is not None else turn["narration"]).strip(), ""]
        lines = (turn["effects"] or {}).get("lines", [])
        if lines:
            out += [f"> {line}" for line in lines] + [""]
    if record["pending"]:
        out += ["## Not yet narrated", ""]
        out += [f"- **{a['author_name']}**: {_one_line(_written(a))}" for a in record["pending"]] + [""]
    sheets = []
    for entry in record["sheets"]:
        try:
            sheets.append(sheet_from_json(json.dumps(entry["sheet"])).party_line())
        except BadInput:
            continue
    if sheets:
        out += ["## The party", ""] + [f"- {line}" for line in sheets] + [""]
    if record["quests"]:
        out += ["## Quests", ""]
        for quest in record["quests"]:
            about_quest = "; ".join(p for p in (f"from {quest['giver']}" if quest["giver"] else "",
                                                f"reward: {quest['reward']}" if quest["reward"] else "") if p)
            out.append(f"- **{quest['title']}** ({quest['status']}" + (f"; {about_quest}" if about_quest else "") + ")")
            out += [f"  {i}. {_one_line(step)}" for i, step in enumerate(quest["steps"], 1)]
        out.append("")
    if record["cards"]:
        out += ["## Story cards", ""]
        out += [f"- **{', '.join(card['keys'])}**: {_one_line(card['written'] or card['text'])}"
                for card in record["cards"]] + [""]
    if record["looks"]:
        out += ["## How they look", ""]
        out += [f"- **{look['name']}**: {_one_line(look['description'])}" for look in record["looks"]] + [""]
    pinned = [m for m in record["memories"] if m["pinned"]]
    if pinned:
        out += ["## Pinned facts", ""] + [f"- {_one_line(m['text'])}" for m in pinned] + [""]
    return "\n".join(out).rstrip() + "\n"


def _written(action: dict) -> str:
    return action["original"] if action["original"] is not None else action["text"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- files past an upload limit -----------------------------------------------------------------------------
def packed(filename: str, data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """The file as it is when it fits `limit` bytes; else gzipped; else the gzip in numbered parts
    (`name.gz.part1`, ..., or part01 ... when there are ten or more), each within the limit: joined in order they
    are the .gz file again."""
    if len(data) <= limit:
        return [(filename, data)]
    packed_data = gzip.compress(data, compresslevel=9, mtime=0)
    if len(packed_data) <= limit:
        return [(f"{filename}.gz", packed_data)]
    size = max(1, limit)
    starts = range(0, len(packed_data), size)
    width = len(str(len(starts)))  # part01 ... part12: in order when listed by name (cat name.gz.part*)
    return [(f"{filename}.gz.part{i + 1:0{width}d}", packed_data[start:start + size]) for i, start in enumerate(starts)]


def unpacked(data: bytes, limit: int | None = None) -> bytes:
    """The file's JSON bytes: gunzipped when it is a gzip file, never past `limit` (BadInput; by default
    IMPORT_MAX_BYTES)."""
    limit = IMPORT_MAX_BYTES if limit is None else limit
    if data[:2] != b"\x1f\x8b":
        if len(data) > limit:
            raise BadInput(f"an import may be at most {limit // (1024 * 1024)} MB of JSON")
        return data
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, limit + 1)
        if len(out) > limit or inflate.unconsumed_tail:
            raise BadInput(f"an import may be at most {limit // (1024 * 1024)} MB of JSON (unpacked)")
        out += inflate.flush()
    except zlib.error:
        raise BadInput("that .gz file is damaged (or only a part of one: join the parts first)") from None
    if not inflate.eof:
        raise BadInput("that .gz file is cut short (or only a part of one: join the parts first)")
    return out


# --- import -------------------------------------------------------------------------------------------------
class _Shape:
    """Reads one part of the file, saying where it went wrong ("turns[3].actions[0].author_id must be ...")."""

    def __init__(self, value: Any, where: str) -> None:
        self.value, self.where = value, where

    def fail(self, wanted: str) -> BadInput:
        return BadInput(f"the file's {self.where} must be {wanted}")

    def obj(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.fail("an object")
        return self.value

    def at(self, key: str, default: Any = ...) -> "_Shape":
        data = self.obj()
        if key not in data:
            if default is ...:
                raise BadInput(f"the file's {self.where or 'record'} has no {key}")
            return _Shape(default, self._path(key))
        return _Shape(data[key], self._path(key))

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def items(self) -> list["_Shape"]:
        if not isinstance(self.value, list):
            raise self.fail("a list")
        return [_Shape(v, f"{self.where}[{i}]") for i, v in enumerate(self.value)]

    def text(self, *, optional: bool = False) -> str | None:
        if optional and self.value is None:
            return None
        if not isinstance(self.value, str):
            raise self.fail("a text" + (" or null" if optional else ""))
        return clean_text(self.value)

    def name(self, limit: int = NAME_MAX_CHARS, fallback: str = "") -> str:
        if not isinstance(self.value, str):
            raise self.fail("a text")
        return clean_name(self.value, limit) or fallback

    def integer(self, low: int = 0, high: int = _MAX_ID, *, optional: bool = False) -> int | None:
        if optional and self.value is None:
            return None
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not low <= self.value <= high:
            raise self.fail(f"a whole number from {low} to {high}")
        return self.value

    def flag(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail("true or false")
        return self.value

    def moment(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not 0 <= self.value < 1e11:
            raise self.fail("a time in seconds since 1970")
        return float(self.value)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def parse(data: bytes, *, defaults: NarratorSettings | None = None) -> dict[str, Any]:
    """The file checked whole and cleaned, in the shape Store.restore_campaign writes; BadInput at the first
    thing that is wrong. Quick: no model, no store."""
    data = unpacked(data)
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadInput("that file is not UTF-8 text: export a campaign with /dm export format:json") from None
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"that file is not JSON ({str(exc)[:80]})") from None
    if not isinstance(raw, dict) or "schema" not in raw:
        raise BadInput("that file is not a campaign export: /dm export format:json makes one")
    schema = raw["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise BadInput(f"that file's schema version {str(schema)[:20]!r} is unknown")
    if schema > SCHEMA:
        raise BadInput(f"that file is of schema version {schema}, newer than this bot reads ({SCHEMA}): "
                       "update the bot first")
    if raw.get("kind", KIND) != KIND:
        raise BadInput("that file is not a campaign export: /dm export format:json makes one")
    root = _Shape(raw, "")
    turns = [_turn(t) for t in root.at("turns").items()]
    numbers = [t["number"] for t in turns]
    if len(set(numbers)) != len(numbers):
        raise BadInput("the file's turns must have different numbers")
    turns.sort(key=lambda t: t["number"])
    memories, seen = [], set()
    for shape in root.at("memories", []).items():
        memory = _memory(shape)
        key = memory_key(memory["text"], memory["speaker"], memory["pinned"])
        if key not in seen:  # the store keeps one copy of each memory
            seen.add(key)
            memories.append(memory)
    record = {
        "campaign": _campaign(root.at("campaign"), defaults),
        "turns": turns,
        "pending": [_action(a) for a in root.at("pending", []).items()],
        "players": _unique([_player(p) for p in root.at("players", []).items()], "author_id", "players"),
        "sheets": _unique([_sheet(s) for s in root.at("sheets", []).items()], "author_id", "sheets"),
        "fight": _fight(root.at("fight", None)),
        "quests": [_quest(q) for q in root.at("quests", []).items()],
        "cards": [_card(c) for c in root.at("cards", []).items()],
        "looks": _unique([_look(look) for look in root.at("looks", []).items()], "name", "looks"),
        "glossary": _unique([_term(g) for g in root.at("glossary", []).items()], "source", "glossary"),
        "memories": memories,
    }
    last = max(numbers, default=0)
    record["summarised_to"] = min(last, root.at("campaign").at("summarised_to", 0).integer(0, 2**31))
    return record


def _unique(rows: list[dict], key: str, what: str) -> list[dict]:
    """Rows whose key the store keeps once (case aside for names): a file that repeats one is wrong."""
    keys = [r[key].casefold() if isinstance(r[key], str) else r[key] for r in rows]
    if len(set(keys)) != len(keys):
        raise BadInput(f"the file's {what} name the same {key.replace('_', ' ')} twice")
    return rows


def _campaign(shape: _Shape, defaults: NarratorSettings | None) -> dict:
    language = shape.at("language", "en").text()
    if not _LANGUAGE.fullmatch(language):
        raise BadInput(f"the file's campaign language {language[:20]!r} is not a language code such as en or ru")
    settings = shape.at("settings", {}).obj()
    probe = Campaign(0, 0, "", "", "", language, settings, True, 0.0)
    try:
        campaign_settings(defaults or NarratorSettings(GenerationSettings()), probe)
    except BadInput as exc:
        raise BadInput(f"the file's campaign settings: {exc}") from None
    except TypeError:
        raise BadInput("the file's campaign settings are not settings this bot knows") from None
    if isinstance(settings.get("author_note"), str):
        settings = {**settings, "author_note": clean_text(settings["author_note"])}
    name = shape.at("name").name(CAMPAIGN_NAME_MAX_CHARS)
    if not name:
        raise BadInput("the file's campaign has no name")
    return {"name": name, "language": language.lower(), "settings": settings,
            "premise": check_text("the file's premise", shape.at("premise", "").text(), PREMISE_MAX_CHARS),
            "style": check_text("the file's style", shape.at("style", "").text(), PREMISE_MAX_CHARS),
            "created": shape.at("created", time.time()).moment()}


def _action(shape: _Shape) -> dict:
    return {"author_id": shape.at("author_id").integer(), "author_name": shape.at("author_name").name(fallback="Someone"),
            "text": shape.at("text").text(), "original": shape.at("original", None).text(optional=True),
            "secret": shape.at("secret", False).flag(), "created": shape.at("created").moment()}


def _turn(shape: _Shape) -> dict:
    return {"number": shape.at("number").integer(1, 2**31), "narration": shape.at("narration").text(),
            "shown": shape.at("shown", None).text(optional=True), "created": shape.at("created").moment(),
            "effects": _effects(shape.at("effects", None)), "context": _context(shape.at("context", None)),
            "actions": [_action(a) for a in shape.at("actions", []).items()]}


def _effects(shape: _Shape) -> dict | None:
    """What a turn's markers did, as undo, retry and the Roll buttons read it: the parts they read checked;
    parts this version does not read are kept as they are (a newer bot's may be there)."""
    if shape.value is None:
        return None
    effects = dict(shape.obj())
    if "lines" in effects:
        effects["lines"] = [line.name(400) for line in shape.at("lines").items()]
    if "applied" in effects:
        applied = []
        for delta in shape.at("applied").items():
            kind = delta.at("kind").text()
            if kind not in _DELTAS:
                raise delta.at("kind").fail("one of " + ", ".join(_DELTAS))
            checked: dict[str, Any] = {"author": delta.at("author").integer(), "kind": kind}
            for key, kind_of in _DELTAS[kind].items():
                part = delta.at(key)
                checked[key] = (part.integer(-10**9, 10**9) if kind_of is int else part.flag() if kind_of is bool
                                else part.text())
            applied.append(checked)
        effects["applied"] = applied
    if "requests" in effects:
        requests = []
        for request in shape.at("requests").items():
            checked = {"author": request.at("author").integer(), "name": request.at("name").name(fallback="Someone"),
                       "expression": request.at("expression").name(100), "reason": request.at("reason", "").name(100)}
            if "rolled" in request.obj():
                checked["rolled"] = request.at("rolled").text()
            requests.append(checked)
        effects["requests"] = requests
    if "fight_before" in effects:
        effects["fight_before"] = _fight_text(shape.at("fight_before"))
    return effects


def _context(shape: _Shape) -> dict | None:
    """What a turn's prompt held from memory (/dm memory last reads it): it must read as one."""
    if shape.value is None:
        return None
    try:
        PromptMemory.from_dict(shape.obj())
    except (TypeError, ValueError, AttributeError):
        raise shape.fail("what a turn's prompt held from memory, as /dm export writes it") from None
    return shape.value


def _memory(shape: _Shape) -> dict:
    kind = shape.at("kind").text()
    if kind not in ("exact", "summary", "fact"):
        raise shape.at("kind").fail("exact, summary or fact")
    text = shape.at("text").text()
    if not text.strip():
        raise shape.at("text").fail("a text that says something")
    speaker = shape.at("speaker", None)
    return {"id": shape.at("id", None).integer(optional=True), "kind": kind, "text": text,
            "speaker": None if speaker.value is None else speaker.name(fallback="Someone"),
            "turn_from": shape.at("turn_from", None).integer(0, 2**31, optional=True),
            "turn_to": shape.at("turn_to", None).integer(0, 2**31, optional=True),
            "pinned": shape.at("pinned", False).flag(), "created": shape.at("created", time.time()).moment()}


def _player(shape: _Shape) -> dict:
    return {"author_id": shape.at("author_id").integer(), "name": shape.at("name").name(fallback="Someone"),
            "joined": shape.at("joined").flag(), "updated": shape.at("updated", time.time()).moment()}


def _sheet(shape: _Shape) -> dict:
    author = shape.at("author_id").integer()
    data = shape.at("sheet")
    data.obj()
    try:
        sheet = sheet_from_json(json.dumps(data.value))
    except BadInput as exc:
        raise BadInput(f"the file's {data.where}: {exc}") from None
    sheet = dataclasses.replace(sheet, name=clean_name(sheet.name) or "Someone", pronouns=clean_name(sheet.pronouns),
                                ancestry=clean_name(sheet.ancestry), klass=clean_name(sheet.klass),
                                notes=clean_text(sheet.notes))
    return {"author_id": author, "data": sheet.to_json(), "updated": shape.at("updated", time.time()).moment()}


def _fight(shape: _Shape) -> str | None:
    """A fight (engine/game/combat.py's JSON, as an object): every field checked, combatants' names cleaned."""
    if shape.value is None:
        return None
    order = []
    for combatant in shape.at("order").items():
        name = combatant.at("name").name(COMBATANT_NAME_MAX_CHARS)
        if not name:
            raise combatant.at("name").fail("a name")
        order.append({
            "name": name, "initiative": combatant.at("initiative").integer(-1000, 1000),
            "dex": combatant.at("dex").integer(-100, 100), "tiebreak": combatant.at("tiebreak").integer(-1000, 1000),
            "shown": combatant.at("shown", "").name(200), "author": combatant.at("author", None).integer(optional=True),
            "hp": combatant.at("hp", 0).integer(-10**6, 10**6), "max_hp": combatant.at("max_hp", 0).integer(0, 10**6),
            "ac": combatant.at("ac", None).integer(-100, 1000, optional=True)})
    fight = {"order": order, "round": shape.at("round", 1).integer(1, 10**6),
             "turn": shape.at("turn", 0).integer(0, max(0, len(order) - 1)), "exact": shape.at("exact", False).flag()}
    # Where its tracker message was (shown_in) is left behind: that message is in the exporting channel.
    text = json.dumps(fight, ensure_ascii=False)
    try:
        return fight_from_json(text).to_json()  # it reads as a fight, and is stored as the game writes it
    except (TypeError, ValueError, KeyError) as exc:
        raise shape.fail(f"a fight as /dm export writes it ({str(exc)[:60]})") from None


def _fight_text(shape: _Shape) -> str | None:
    """A fight kept as its JSON text (a turn's record of the fight before it, which undo puts back)."""
    if shape.value is None:
        return None
    if not isinstance(shape.value, str):
        raise shape.fail("a fight's JSON text or null")
    try:
        value = json.loads(shape.value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise shape.fail("a fight's JSON text or null") from None
    return _fight(_Shape(value, shape.where))


def _quest(shape: _Shape) -> dict:
    status = shape.at("status", "active").text()
    if status not in _STATUSES:
        raise shape.at("status").fail("active, done or failed")
    title = shape.at("title").name(TITLE_MAX_CHARS)
    if not title:
        raise shape.at("title").fail("a title")
    return {"title": title, "giver": shape.at("giver", "").name(FIELD_MAX_CHARS),
            "reward": shape.at("reward", "").name(FIELD_MAX_CHARS), "status": status,
            "steps": [s.name(STEP_MAX_CHARS) for s in shape.at("steps", []).items()],
            "created": shape.at("created", time.time()).moment(), "updated": shape.at("updated", time.time()).moment()}


def _card(shape: _Shape) -> dict:
    keys = list(dict.fromkeys(k for k in (key.name(KEY_MAX_CHARS) for key in shape.at("keys").items()) if k))
    if not keys:
        raise shape.at("keys").fail("a list of at least one key")
    text = shape.at("text").text()
    return {"id": shape.at("id", None).integer(optional=True), "keys": keys, "text": text,
            "written": shape.at("written", text).text(), "created": shape.at("created", time.time()).moment()}


def _look(shape: _Shape) -> dict:
    name = shape.at("name").name()
    if not name:
        raise shape.at("name").fail("a name")
    return {"name": name, "description": shape.at("description").text(),
            "updated": shape.at("updated", time.time()).moment()}


def _term(shape: _Shape) -> dict:
    source, target = shape.at("source").name(TERM_MAX_CHARS), shape.at("target").name(TERM_MAX_CHARS)
    if not source or not target:
        raise shape.fail("a glossary entry with both words")
    return {"source": source, "target": target, "auto": shape.at("auto", False).flag()}


def remap_context(context: dict, memory_ids: dict[int, int], card_ids: dict[int, int]) -> dict:
    """A turn's context with the ids of memories and cards as the importing store numbers them (an entry the
    file no longer has keeps its old number: /dm memory last shows it as it was)."""
    def entries(items: list, ids: dict[int, int]) -> list:
        return [{**item, "id": ids.get(item.get("id"), item.get("id"))} if isinstance(item, dict) else item
                for item in items]

    out = dict(context)
    for key, ids in (("pinned", memory_ids), ("recalled", memory_ids), ("cards", card_ids)):
        if isinstance(out.get(key), list):
            out[key] = entries(out[key], ids)
    return out


async def embed_memories(bank: MemoryBank, texts: list[str], progress: Callable[[int, int], None] | None = None
                         ) -> np.ndarray:
    """The memories' vectors by the bank's embedder, a batch at a time (other jobs get the worker between);
    `progress(done, total)` before the first batch and after each."""
    if progress is not None:
        progress(0, len(texts))
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(await bank.embed(texts[start:start + EMBED_BATCH]))
        if progress is not None:
            progress(min(len(texts), start + EMBED_BATCH), len(texts))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


async def import_json(store: Store, memory_bank: MemoryBank, channel_id: int, data: bytes, *,
                      defaults: NarratorSettings | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Campaign:
    """A running campaign in the channel from an export (JSON, or gzipped JSON): checked whole first, the
    memories embedded anew by the bank's embedder, then everything written in one transaction. BadInput, with
    nothing created, when the file is wrong or the channel has a campaign running."""
    running = await store.campaign_for_channel(channel_id)  # quick: before reading a large file
    if running is not None:
        raise BadInput(f"this channel already has a campaign running: {running.name}")
    record = await asyncio.to_thread(parse, data, defaults=defaults)  # megabytes of JSON: off the event loop
    vectors = await embed_memories(memory_bank, [m["text"] for m in record["memories"]], progress)
    return await store.restore_campaign(channel_id, record, vectors, memory_bank.embedder_id, remap_context)


__all__ = ["IMPORT_MAX_BYTES", "SCHEMA", "clean_name", "clean_text", "dumps", "export_json", "export_markdown",
           "import_json", "markdown", "packed", "parse", "unpacked"]
