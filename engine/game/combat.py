"""A fight as a value, like Avrae's initiative tracker in miniature: who is in it, in which order, whose turn it
is, the NPCs' HP (players' HP live on their sheets). Every change returns a new Fight, checked, so what does not
fit (an unknown name, more than 20 at once, an empty fight) raises BadInput and nothing is stored.

Initiative is 1d20 + the DEX modifier, rolled with d20; ties go to the higher DEX modifier, then to a d20 roll.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Mapping

from engine.errors import BadInput
from engine.game.dice import roll
from engine.game.sheets import Sheet

MAX_COUNT, MAX_COMBATANTS, NAME_MAX_CHARS = 20, 60, 40
NPC_HP = 10  # an NPC the DM brings in by marker without saying its HP


@dataclass(frozen=True)
class Combatant:
    name: str
    initiative: int
    dex: int  # the DEX modifier: the first tie-break
    tiebreak: int  # a d20: the second
    shown: str = ""  # the initiative roll, every die
    author: int | None = None  # a player's; None: an NPC
    hp: int = 0  # NPCs only (a player's HP is on their sheet)
    max_hp: int = 0
    ac: int | None = None

    @property
    def npc(self) -> bool:
        return self.author is None

    @property
    def down(self) -> bool:
        return self.npc and self.hp <= 0


def npc_state(hp: int, max_hp: int) -> str:
    """An NPC's HP as the table sees it unless the admins choose exact numbers."""
    if hp <= 0:
        return "down"
    if hp >= max_hp:
        return "unhurt"
    return "bloodied" if hp * 2 <= max_hp else "hurt"


@dataclass(frozen=True)
class Fight:
    """A campaign's fight: the combatants in initiative order, the round, whose turn it is."""
    order: tuple[Combatant, ...] = ()
    round: int = 1
    turn: int = 0  # index in `order` of whose turn it is
    exact: bool = False  # NPCs' HP shown as numbers to the table
    shown_in: tuple[int, int] | None = None  # where its tracker message is: a channel's id and the message's

    # --- reading ---
    @property
    def current(self) -> Combatant:
        return self.order[self.turn]

    def find(self, name: str) -> Combatant | None:
        key = " ".join(name.split()).casefold()
        return next((c for c in self.order if c.name.casefold() == key), None)

    def _hp(self, combatant: Combatant, sheets: Mapping[int, Sheet], exact: bool) -> str:
        if not combatant.npc:
            sheet = sheets.get(combatant.author)
            return "" if sheet is None else f"HP {sheet.hp}/{sheet.max_hp}" + (", down" if sheet.hp == 0 else "")
        return f"HP {combatant.hp}/{combatant.max_hp}" if exact else npc_state(combatant.hp, combatant.max_hp)

    def player_up(self) -> Combatant | None:
        """The player whose action the fight waits for: the current combatant, or the first player after it."""
        for step in range(len(self.order)):
            combatant = self.order[(self.turn + step) % len(self.order)]
            if not combatant.npc:
                return combatant
        return None

    def _npcs_between(self, start: int) -> tuple[list[Combatant], Combatant | None]:
        """From index `start` on: the NPCs standing before the next player, and that player."""
        npcs = []
        for step in range(len(self.order)):
            combatant = self.order[(start + step) % len(self.order)]
            if not combatant.npc:
                return npcs, combatant
            if not combatant.down:
                npcs.append(combatant)
        return npcs, None

    def block(self, sheets: Mapping[int, Sheet]) -> str:
        """The prompt's combat block: "Combat, round 2. Now: Aria. Order: Aria 19, Goblin 1 15 (bloodied), ...",
        then whose turns this narration tells: the NPCs before the player up, and those after, up to the next."""
        order = ", ".join(f"{c.name} {c.initiative}" + (f" ({npc_state(c.hp, c.max_hp)})" if c.npc else "")
                          for c in self.order)
        line = f"Combat, round {self.round}. Now: {self.current.name}. Order: {order}."
        up = self.player_up()
        if up is None:
            return line + " Narrate the NPCs' turns."
        before, _ = self._npcs_between(self.turn)
        if before:
            line += f" Narrate the turns of {_names([c.name for c in before])}, then {up.name} acts."
        after, following = self._npcs_between(self.order.index(up) + 1)
        if after:
            line += f" After {up.name}, narrate the turns of {_names([c.name for c in after])}"
            line += f", then stop: {following.name} acts next." if following and following is not up else "."
        elif following is not None and following is not up:
            line += f" Then stop: {following.name} acts next."
        return line

    def tracker(self, sheets: Mapping[int, Sheet]) -> str:
        """The tracker message: the order, whose turn, players' HP exactly, NPCs' as a word (or exact)."""
        lines = [f"⚔️ **Combat, round {self.round}**"]
        for index, c in enumerate(self.order):
            mark = "▶️" if index == self.turn else ("💀" if c.down else "▫️")
            hp = self._hp(c, sheets, self.exact)
            lines.append(f"{mark} {c.initiative:>2} · {c.name}" + (f" · {hp}" if hp else "") +
                         (f" · AC {c.ac}" if c.npc and c.ac is not None and self.exact else ""))
        return "\n".join(lines)

    # --- changing ---
    @classmethod
    def start(cls, sheets: Mapping[int, Sheet]) -> "Fight":
        """Initiative for every character with a sheet."""
        if not sheets:
            raise BadInput("nobody has a character sheet yet: `/dm sheet set` first, or add NPCs with /dm combat add")
        return cls(_ordered([_rolled(s.name, s.modifier("dex"), author=a) for a, s in sheets.items()]))

    def add(self, name: str, modifier: int = 0, hp: int = NPC_HP, ac: int | None = None,
            count: int = 1) -> tuple["Fight", list[Combatant]]:
        """NPCs join: "Goblin" with count 3 is Goblin 1, Goblin 2, Goblin 3 (numbers go on after those in)."""
        name = re.sub(r"[\x00-\x1f@#*_`~|<>]", "", " ".join(name.split()))[:NAME_MAX_CHARS].strip()
        if not name:
            raise BadInput("give the NPC a name")
        if not 1 <= count <= MAX_COUNT:
            raise BadInput(f"add 1 to {MAX_COUNT} at a time")
        if not 1 <= hp <= 9999 or not -10 <= modifier <= 20 or ac is not None and not 0 <= ac <= 50:
            raise BadInput("an NPC's HP is 1 to 9999, its initiative modifier -10 to +20, its AC 0 to 50")
        if len(self.order) + count > MAX_COMBATANTS:
            raise BadInput(f"a fight holds at most {MAX_COMBATANTS}")
        taken = {c.name.casefold() for c in self.order}
        names, number = [], 0
        if count == 1 and name.casefold() not in taken:
            names = [name]
        while len(names) < count:
            number += 1
            if f"{name} {number}".casefold() not in taken:
                names.append(f"{name} {number}")
        added = [dataclasses.replace(_rolled(n, modifier), hp=hp, max_hp=hp, ac=ac) for n in names]
        current = self.current if self.order else None
        order = _ordered([*self.order, *added])
        turn = order.index(current) if current else 0
        return dataclasses.replace(self, order=order, turn=turn), added

    def remove(self, name: str) -> "Fight":
        gone = self.find(name)
        if gone is None:
            raise BadInput(f"nobody called {name} is in this fight ({', '.join(c.name for c in self.order)})")
        index = self.order.index(gone)
        order = tuple(c for c in self.order if c is not gone)
        if not order:
            raise BadInput("that would leave nobody in the fight: /dm combat end ends it")
        turn = self.turn - (index < self.turn)
        return dataclasses.replace(self, order=order, turn=turn % len(order))

    def next(self) -> "Fight":
        """The next combatant standing (a downed NPC is skipped); past the last, a new round."""
        turn, round_ = self.turn, self.round
        for _ in range(len(self.order)):
            turn += 1
            if turn >= len(self.order):
                turn, round_ = 0, round_ + 1
            if not self.order[turn].down:
                break
        return dataclasses.replace(self, turn=turn, round=round_)

    def after_narration(self) -> "Fight":
        """The DM narrated the player up and the NPCs around them: the turn goes to the next player (a new
        round when it passes the end of the order)."""
        up = self.player_up()
        fight = self.next()
        if up is None:
            return fight  # NPCs only: one step at a time
        while fight.current is not up:  # the NPCs before the player up were narrated too
            fight = fight.next()
        fight = fight.next()
        while fight.current.npc:  # and the NPCs after them
            fight = fight.next()
        return fight

    def with_hp(self, name: str, change: int) -> tuple["Fight", str]:
        """Damage or healing for an NPC; at 0 it is down (and skipped from then on)."""
        npc = self.find(name)
        if npc is None or not npc.npc:
            raise BadInput(f"no NPC called {name} is in this fight")
        hp = max(0, min(npc.max_hp, npc.hp + change))
        changed = dataclasses.replace(npc, hp=hp)
        fight = dataclasses.replace(self, order=tuple(changed if c is npc else c for c in self.order))
        verb = f"takes {-change} damage" if change < 0 else f"heals {change}"
        state = f"HP {hp}/{npc.max_hp}" if self.exact else npc_state(hp, npc.max_hp)
        return fight, f"{npc.name} {verb} ({state})" + (f"; {npc.name} is down" if hp == 0 else "")

    # --- stored ---
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


def fight_from_json(text: str) -> Fight:
    data = json.loads(text)
    shown = data.get("shown_in")
    return Fight(tuple(Combatant(**c) for c in data["order"]), data["round"], data["turn"], data["exact"],
                 tuple(shown) if shown else None)


def _rolled(name: str, dex: int, author: int | None = None) -> Combatant:
    made = roll(f"1d20{dex:+d}" if dex else "1d20", reason="initiative")
    return Combatant(name, made.total, dex, roll("1d20").total, made.shown, author)


def _ordered(combatants: list[Combatant]) -> tuple[Combatant, ...]:
    return tuple(sorted(combatants, key=lambda c: (-c.initiative, -c.dex, -c.tiebreak)))


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_GROUP = re.compile(r"(?:(\d{1,2})|an?|the)?\s*([^\d,][^,]*?)(?:\s+hp\s+(\d{1,4}))?", re.IGNORECASE)


def npc_groups(text: str) -> list[tuple[str, int, int]]:
    """"3 goblins, an ogre hp 30" -> [("Goblin", 3, 10), ("Ogre", 1, 30)]: what a combat marker brings in."""
    groups = []
    for part in (p.strip() for p in text.replace(" and ", ",").split(",")):
        match = _GROUP.fullmatch(part) if part else None
        if not match:
            continue
        count, name = int(match.group(1) or 1), " ".join(match.group(2).split())
        if count > 1 and name.lower().endswith("s") and not name.lower().endswith("ss"):
            name = name[:-1]  # "goblins" -> "goblin"
        groups.append((name[:1].upper() + name[1:], count, int(match.group(3) or NPC_HP)))
    return groups
