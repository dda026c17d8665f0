"""Character sheets: a system-agnostic core that fits D&D 5e (no spell lists, no class rules).

A Sheet is a value: every change returns a new one, checked, so a change that does not fit (a field that
does not exist, a value out of range, an item nobody has) raises BadInput and nothing is stored. HP never
goes below 0 or above max, damage takes temporary HP first; the inventory only ever changes by a quantity,
never by a replacement of the list.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from engine.errors import BadInput

ABILITIES = ("str", "dex", "con", "int", "wis", "cha")
# The 5e skills and the ability each adds.
SKILLS = {
    "acrobatics": "dex", "animal handling": "wis", "arcana": "int", "athletics": "str", "deception": "cha",
    "history": "int", "insight": "wis", "intimidation": "cha", "investigation": "int", "medicine": "wis",
    "nature": "int", "perception": "wis", "performance": "cha", "persuasion": "cha", "religion": "int",
    "sleight of hand": "dex", "stealth": "dex", "survival": "wis",
}
TEXT_MAX_CHARS, NOTES_MAX_CHARS, ITEM_MAX_CHARS, MAX_ITEMS, MAX_QUANTITY = 80, 1000, 60, 100, 100000
# max_hp before hp: a sheet read from JSON sets its fields in this order
_NUMBERS = {"level": (0, 30), "max_hp": (1, 9999), "hp": (0, 9999), "temp_hp": (0, 9999), "ac": (0, 50),
            "prof": (0, 10), "gold": (0, 10**9), **{a: (1, 30) for a in ABILITIES}}
_TEXTS = ("name", "pronouns", "ancestry", "class", "notes")
FIELDS = (*_TEXTS, *_NUMBERS, "skills", "conditions")


@dataclass(frozen=True)
class Sheet:
    """One player's character in one campaign."""
    name: str
    pronouns: str = ""
    ancestry: str = ""
    klass: str = ""  # "class" to players
    level: int = 1
    hp: int = 10
    max_hp: int = 10
    temp_hp: int = 0
    ac: int = 10
    scores: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ABILITIES, 10))
    prof: int = 2
    skills: tuple[str, ...] = ()  # proficient skills
    conditions: tuple[str, ...] = ()
    inventory: dict[str, int] = field(default_factory=dict)  # item -> quantity, in the order added
    gold: int = 0
    notes: str = ""

    # --- reading ---
    def modifier(self, ability: str) -> int:
        return (self.scores[ability] - 10) // 2

    def modifiers(self) -> dict[str, int]:
        """Names a roll may use in place of numbers: abilities, skills (with proficiency), prof."""
        named = {a: self.modifier(a) for a in ABILITIES}
        named.update({skill: self.modifier(ability) + (self.prof if skill in self.skills else 0)
                      for skill, ability in SKILLS.items()})
        named["prof"] = self.prof
        return named

    def party_line(self) -> str:
        """The compact line the DM reads in every prompt."""
        who = ", ".join(p for p in (self.pronouns, " ".join(p for p in (self.ancestry, self.klass) if p)) if p)
        if self.klass or self.ancestry:
            who += f" {self.level}"
        state = [f"HP {self.hp}/{self.max_hp}" + (f" (+{self.temp_hp} temporary)" if self.temp_hp else ""),
                 f"AC {self.ac}", *self.conditions]
        if self.hp == 0:
            state.insert(1, "down")
        line = f"{self.name}" + (f" ({who.strip()})" if who.strip() else "") + ": " + ", ".join(state)
        if self.inventory:
            line += "; carries " + ", ".join(_item(name, qty) for name, qty in self.inventory.items())
        return line + (f"; {self.gold} gold" if self.gold else "")

    def free_texts(self) -> list[str]:
        """What players wrote in words that the party line shows (the name aside): for translation."""
        return [t for t in (self.pronouns, self.ancestry, self.klass, *self.conditions, *self.inventory) if t.strip()]

    def with_texts(self, said: Mapping[str, str]) -> "Sheet":
        """The sheet with its free texts said otherwise (in the model's language); a copy, never stored."""
        def in_(text: str) -> str:
            return said.get(text, text)
        inventory: dict[str, int] = {}
        for item, quantity in self.inventory.items():
            inventory[in_(item)] = inventory.get(in_(item), 0) + quantity
        return dataclasses.replace(self, pronouns=in_(self.pronouns), ancestry=in_(self.ancestry), klass=in_(self.klass),
                                   conditions=tuple(in_(c) for c in self.conditions), inventory=inventory)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["class"] = data.pop("klass")
        data.update(data.pop("scores"))
        data["skills"], data["conditions"] = list(self.skills), list(self.conditions)
        return json.dumps(data, ensure_ascii=False)

    # --- changing ---
    def with_field(self, name: str, value: str) -> "Sheet":
        """The sheet with one field set from what a player typed."""
        key = name.strip().lower().replace(" ", "_")
        key = {"max": "max_hp", "temp": "temp_hp", "proficiency": "prof", "race": "ancestry"}.get(key, key)
        value = " ".join(value.split())
        if key in _NUMBERS:
            number = _number(key, value)
            if key in ABILITIES:
                return dataclasses.replace(self, scores={**self.scores, key: number})
            changed = dataclasses.replace(self, **{key: number})
            if key == "max_hp":
                changed = dataclasses.replace(changed, hp=min(changed.hp, number))
            if changed.hp > changed.max_hp:
                raise BadInput(f"HP {changed.hp} would be above max HP {changed.max_hp}")
            return changed
        if key in _TEXTS:
            limit = NOTES_MAX_CHARS if key == "notes" else TEXT_MAX_CHARS
            if len(value) > limit:
                raise BadInput(f"{key} may be at most {limit} characters")
            if key == "name" and not value:
                raise BadInput("a character needs a name")
            return dataclasses.replace(self, **{"klass" if key == "class" else key: value})
        if key == "skills":
            skills = tuple(dict.fromkeys(s.strip().lower() for s in value.split(",") if s.strip()))
            unknown = [s for s in skills if s not in SKILLS]
            if unknown:
                raise BadInput(f"no skill called {', '.join(unknown)} (skills: {', '.join(SKILLS)})")
            return dataclasses.replace(self, skills=skills)
        if key == "conditions":
            conditions = tuple(dict.fromkeys(c.strip().lower() for c in value.split(",") if c.strip()))
            if any(len(c) > TEXT_MAX_CHARS for c in conditions) or len(conditions) > 20:
                raise BadInput(f"at most 20 conditions of {TEXT_MAX_CHARS} characters each")
            return dataclasses.replace(self, conditions=conditions)
        raise BadInput(f"a sheet has no field {name!r}; fields: {', '.join(FIELDS)}")

    def with_hp(self, change: int) -> tuple["Sheet", str]:
        """Damage (negative) takes temporary HP first; healing stops at max; HP never below 0."""
        temp, hp = self.temp_hp, self.hp
        if change < 0:
            absorbed = min(temp, -change)
            temp, hp = temp - absorbed, max(0, hp - (-change - absorbed))
            said = f"{self.name} takes {-change} damage"
        else:
            hp = min(self.max_hp, hp + change)
            said = f"{self.name} heals {change}"
        changed = dataclasses.replace(self, hp=hp, temp_hp=temp)
        said += f" (HP {hp}/{self.max_hp}" + (f", {temp} temporary" if temp else "") + ")"
        return changed, said + (f"; {self.name} is down" if hp == 0 else "")

    def item_key(self, item: str) -> str:
        """How the inventory spells an item ("Arrow" and "arrow" find "arrows"); as given when it has none."""
        name = " ".join(item.split())
        key = next((k for k in self.inventory if k.lower() == name.lower()), None)
        return key or next((k for k in self.inventory if _singular(k) == _singular(name)), name)

    def with_item(self, item: str, quantity: int) -> tuple["Sheet", str]:
        """`quantity` more (or, negative, fewer) of an item; the list is never replaced."""
        name = " ".join(item.split())
        if not name or len(name) > ITEM_MAX_CHARS:
            raise BadInput(f"an item's name takes 1 to {ITEM_MAX_CHARS} characters")
        if quantity == 0 or abs(quantity) > MAX_QUANTITY:
            raise BadInput(f"a quantity is 1 to {MAX_QUANTITY}")
        key = self.item_key(name)
        have = self.inventory.get(key, 0)
        if have + quantity < 0:
            raise BadInput(f"{self.name} has {_item(key, have) if have else f'no {name}'}")
        inventory = {**self.inventory, key: have + quantity}
        if inventory[key] == 0:
            del inventory[key]
        if len(inventory) > MAX_ITEMS:
            raise BadInput(f"a sheet holds at most {MAX_ITEMS} different items")
        verb = "gains" if quantity > 0 else "loses"
        return dataclasses.replace(self, inventory=inventory), f"{self.name} {verb} {_item(key, abs(quantity))}"

    def with_condition(self, condition: str, present: bool) -> tuple["Sheet", str]:
        """A condition added (poisoned, prone...) or taken away; one that is already so is refused."""
        name = " ".join(condition.split()).lower()
        if not name or len(name) > TEXT_MAX_CHARS:
            raise BadInput(f"a condition's name takes 1 to {TEXT_MAX_CHARS} characters")
        if (name in self.conditions) == present:
            raise BadInput(f"{self.name} is {'already' if present else 'not'} {name}")
        if present and len(self.conditions) >= 20:
            raise BadInput("a sheet holds at most 20 conditions")
        conditions = (*self.conditions, name) if present else tuple(c for c in self.conditions if c != name)
        said = f"{self.name} is {name}" if present else f"{self.name} is no longer {name}"
        return dataclasses.replace(self, conditions=conditions), said

    def with_gold(self, change: int) -> tuple["Sheet", str]:
        gold = self.gold + change
        if gold < 0:
            raise BadInput(f"{self.name} has only {self.gold} gold")
        if gold > _NUMBERS["gold"][1]:
            raise BadInput("that is more gold than a sheet holds")
        verb = "gains" if change >= 0 else "spends"
        return dataclasses.replace(self, gold=gold), f"{self.name} {verb} {abs(change)} gold ({gold} gold)"


def sheet_from_json(text: str) -> Sheet:
    """A sheet from its JSON (an export, or the store's); every field checked as if typed."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"that is not a sheet's JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise BadInput("a sheet's JSON is an object with at least a name")
    sheet = Sheet(name=data["name"].strip() or "Someone")
    for key in FIELDS:
        value = data.get(key)
        if value is None or key == "name":
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        sheet = sheet.with_field(key, str(value))
    inventory = data.get("inventory") or {}
    if not isinstance(inventory, dict):
        raise BadInput("a sheet's inventory is an object of item names and quantities")
    for item, quantity in inventory.items():
        if not isinstance(quantity, int) or quantity < 1:
            raise BadInput(f"{item!r}: a quantity is a whole number of at least 1")
        sheet = sheet.with_item(item, quantity)[0]
    return sheet


def _number(key: str, value: str) -> int:
    low, high = _NUMBERS[key]
    if not re.fullmatch(r"[+-]?\d{1,10}", value):
        raise BadInput(f"{key} must be a whole number, not {value[:20]!r}")
    number = int(value)
    if not low <= number <= high:
        raise BadInput(f"{key} must be from {low} to {high}")
    return number


def _singular(name: str) -> str:
    name = name.lower()
    return name[:-2] if name.endswith("es") and name[-3:-2] in "sxz" else name[:-1] if name.endswith("s") else name


def _item(name: str, quantity: int) -> str:
    return name if quantity == 1 else f"{quantity} {name}"
