"""The DM's state markers applied to the sheets when a narration is saved, and taken back when the turn is
undone or retold: the one way the story changes HP, items, conditions and gold.

Names are resolved and dice rolled before the save (`changes`), so applying is a pure function of the sheets
as they stand in the save's transaction (`apply`). What a turn applied is kept as deltas, so taking it back
(`revert`) leaves alone whatever players changed on their sheets since.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from engine.errors import BadInput
from engine.game.dice import amount
from engine.game.combat import MAX_COUNT, Fight, fight_from_json, npc_groups
from engine.game.markers import CombatMarker, StateMarker
from engine.game.sheets import Sheet, sheet_from_json

Sheets = Mapping[int, str]  # author id -> the sheet's JSON, as the store keeps them


@dataclass(frozen=True)
class Change:
    """A state marker resolved: whose sheet (None: nobody by that name), and by how much."""
    who: str
    author_id: int | None
    kind: str  # hp | gold | item | condition
    amount: int = 0  # hp, gold: signed; item: signed quantity; condition: +1 added, -1 taken away
    what: str = ""  # the item or the condition


class Party:
    """Who a marker may name: players by their character's name or their own, a first name alone when only one has it."""

    def __init__(self, sheets: Mapping[int, Sheet], players: Mapping[int, str]) -> None:
        self.sheets = dict(sheets)
        self._names: dict[str, set[int]] = {}
        self._first: dict[str, set[int]] = {}
        for author, name in [*((a, s.name) for a, s in sheets.items()), *players.items()]:
            self._names.setdefault(name.casefold().strip(), set()).add(author)
            if " " in name.strip():
                self._first.setdefault(name.split()[0].casefold(), set()).add(author)

    def find(self, who: str) -> int | None:
        key = " ".join(who.split()).casefold().strip("*_ ")
        for table in (self._names, self._first):
            found = table.get(key, set())
            if len(found) == 1:
                return next(iter(found))
        return None

    def name(self, author: int, fallback: str) -> str:
        sheet = self.sheets.get(author)
        return sheet.name if sheet else fallback


def changes(markers: Iterable[StateMarker | CombatMarker], party: Party) -> list[Change]:
    """The markers with names found and dice rolled (once: a retry or an undo never rolls them again).
    A marker whose amount cannot be rolled changes nothing and says so."""
    out = []
    for marker in markers:
        if isinstance(marker, CombatMarker):
            out.append(Change("", None, "combat", 1 if marker.start else -1, marker.npcs))
            continue
        author = party.find(marker.who)
        if marker.kind in ("hp", "gold"):
            try:
                value = amount(("-" if marker.sign < 0 else "+") + marker.what)
            except BadInput:
                out.append(Change(marker.who, None, "bad", what=marker.what))
                continue
            out.append(Change(marker.who, author, marker.kind, value))
        else:
            out.append(Change(marker.who, author, marker.kind, marker.sign * marker.quantity, marker.what))
    return out


def apply(sheets: Sheets, fight: str | None, planned: Sequence[Change]) -> tuple[dict[int, str], str | None, dict]:
    """The changed sheets' JSON, the fight after, and the turn's record: what was applied (as deltas) and one
    line per change for the table ("Aria takes 5 damage (HP 10/24)", or why nothing changed). A name no player
    goes by may be an NPC of the fight (its HP only)."""
    current = {author: sheet_from_json(data) for author, data in sheets.items()}
    battle = fight_from_json(fight) if fight else None
    applied, lines = [], []
    for change in planned:
        if change.kind == "combat":
            battle, said = _combat(battle, current, change)
            lines.append(said)
            continue
        sheet = current.get(change.author_id) if change.author_id is not None else None
        if change.kind == "bad":
            lines.append(f"Nothing changed: `{change.what}` is not an amount")
            continue
        if change.author_id is None and battle is not None and battle.find(change.who) and change.kind == "hp":
            try:
                battle, said = battle.with_hp(change.who, change.amount)
            except BadInput as exc:
                said = f"Nothing changed: {exc}"
            lines.append(said)
            continue
        if change.author_id is None:
            lines.append(f"Nothing changed: nobody here is called {change.who}")
            continue
        if sheet is None:
            lines.append(f"Nothing changed: {change.who} has no character sheet")
            continue
        try:
            changed, said = _change(sheet, change)
        except BadInput as exc:
            lines.append(f"Nothing changed: {exc}")
            continue
        applied.append(_delta(change, sheet, changed))
        current[change.author_id] = changed
        lines.append(said)
    touched = {d["author"] for d in applied}
    return ({a: current[a].to_json() for a in touched}, battle.to_json() if battle else None,
            {"applied": applied, "lines": lines})


def revert(sheets: Sheets, fight: str | None, record: Mapping | None) -> tuple[dict[int, str], str | None]:
    """The sheets with a turn's changes taken back, newest first (what players changed since stays), and the
    fight as it was before the turn when the turn changed it."""
    current = {author: sheet_from_json(data) for author, data in sheets.items()}
    touched = set()
    for delta in reversed((record or {}).get("applied", [])):
        sheet = current.get(delta["author"])
        if sheet is None:
            continue
        current[delta["author"]] = _undo(sheet, delta)
        touched.add(delta["author"])
    if record and "fight_before" in record:
        fight = record["fight_before"]
    return {a: current[a].to_json() for a in touched}, fight


def _combat(battle: Fight | None, sheets: Mapping[int, Sheet], change: Change) -> tuple[Fight | None, str]:
    if change.amount < 0:
        return (None, "⚔️ The fight is over") if battle else (None, "Nothing changed: no fight is on")
    if battle is not None:
        return battle, "Nothing changed: a fight is on already"
    try:
        battle = Fight.start(sheets) if sheets else Fight()
        for name, count, hp in npc_groups(change.what):
            battle = battle.add(name, hp=hp, count=min(count, MAX_COUNT))[0]
    except BadInput as exc:
        return None, f"Nothing changed: {exc}"
    if not battle.order:
        return None, "Nothing changed: a fight needs someone in it"
    return battle, "⚔️ Combat! Initiative: " + ", ".join(f"{c.name} {c.initiative}" for c in battle.order)


def _change(sheet: Sheet, change: Change) -> tuple[Sheet, str]:
    if change.kind == "hp":
        return sheet.with_hp(change.amount)
    if change.kind == "gold":
        return sheet.with_gold(change.amount)
    if change.kind == "item":
        return sheet.with_item(change.what, change.amount)
    return sheet.with_condition(change.what, change.amount > 0)


def _delta(change: Change, before: Sheet, after: Sheet) -> dict:
    delta = {"author": change.author_id, "kind": change.kind}
    if change.kind == "hp":
        delta.update(hp=after.hp - before.hp, temp=after.temp_hp - before.temp_hp)
    elif change.kind == "gold":
        delta.update(gold=after.gold - before.gold)
    elif change.kind == "item":  # the name as the sheet spells it
        key = after.item_key(change.what) if change.amount > 0 else before.item_key(change.what)
        delta.update(item=key, quantity=after.inventory.get(key, 0) - before.inventory.get(key, 0))
    else:
        delta.update(condition=" ".join(change.what.split()).lower(), added=change.amount > 0)
    return delta


def _undo(sheet: Sheet, delta: Mapping) -> Sheet:
    kind = delta["kind"]
    if kind == "hp":
        return dataclasses.replace(sheet, hp=max(0, min(sheet.max_hp, sheet.hp - delta["hp"])),
                                   temp_hp=max(0, sheet.temp_hp - delta["temp"]))
    if kind == "gold":
        return sheet.with_gold(max(-sheet.gold, -delta["gold"]))[0]
    if kind == "item":
        have = sheet.inventory.get(sheet.item_key(delta["item"]), 0)
        back = max(-have, -delta["quantity"])  # what was used up since cannot come back twice
        return sheet.with_item(delta["item"], back)[0] if back else sheet
    present = delta["condition"] in sheet.conditions
    if present == delta["added"]:
        return sheet.with_condition(delta["condition"], not delta["added"])[0]
    return sheet
