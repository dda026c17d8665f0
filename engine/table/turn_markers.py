"""A narration's markers (engine/game/markers.py) turned into the turn: anyone's roll but a player's made where the
marker stood, the rolls asked of players kept for their buttons, the state changes planned for the save.

Nothing here touches the sheets: `Narration.settle` does, inside the store's transaction that saves the turn
(or retells it: the old turn's effects are taken back first), so a cancelled or failed turn changes nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.errors import BadInput
from engine.game import roll
from engine.game.dice import REASON_MAX_CHARS
from engine.game.ledger import Party, apply, changes, revert
from engine.game.combat import fight_from_json
from engine.game.markers import MARKER, CombatMarker, RollMarker, StateMarker, extract, parse
from engine.store.campaigns import Settle
from engine.table.kept_text import posted_narration

log = logging.getLogger(__name__)
MAX_ROLLS_A_TURN = 6  # NPC rolls the model may go on after, in one narration; later ones are rolled in place only


def npc_rolls(text: str, party: Party) -> str:
    """Every roll marker for anyone but a player, rolled and written in its place ("[rolled 1d20+4 for goblin
    attack = 16]"), the way players' rolls stand in their actions; one that cannot be rolled is dropped."""
    def rolled(match) -> str:
        marker = parse(match.group(1))
        if not isinstance(marker, RollMarker) or party.find(marker.who) is not None:
            return match.group(0)
        reason = ", ".join(part for part in (marker.who, marker.reason) if part)[:REASON_MAX_CHARS]
        try:
            return roll(marker.expression, reason=reason).story_text(reason)
        except BadInput as exc:
            log.info("dropped a roll marker that cannot be rolled: %r (%s)", match.group(0), exc)
            return ""
    return MARKER.sub(rolled, text)


def roll_request(marker: RollMarker, party: Party) -> dict | None:
    """A roll the DM asks of a player, as the turn keeps it for the button; None when it cannot be rolled."""
    author = party.find(marker.who)
    if author is None:
        return None
    sheet = party.sheets.get(author)
    reason = marker.reason[:REASON_MAX_CHARS]
    try:
        roll(marker.expression, sheet.modifiers() if sheet else None, reason=reason)  # it can be rolled
    except BadInput as exc:
        log.info("dropped a roll request that cannot be rolled: %r (%s)", marker, exc)
        return None
    return {"author": author, "name": party.name(author, marker.who), "expression": marker.expression,
            "reason": reason}


@dataclass(frozen=True)
class Narration:
    """A narration made fit to post (no marker left in it), and how its markers settle when it is saved."""
    text: str
    settle: Settle

    @classmethod
    def of(cls, reply: str, names: set[str], party: Party) -> "Narration":
        text, markers = extract(npc_rolls(reply, party))  # rolls a reply drawn whole left (beam search)
        planned = changes([m for m in markers if isinstance(m, (StateMarker, CombatMarker))], party)
        requests, asked = [], set()
        for marker in markers:
            request = roll_request(marker, party) if isinstance(marker, RollMarker) else None
            if request is not None and request["author"] not in asked:  # one roll at a time per player
                asked.add(request["author"])
                requests.append(request)

        def settle(sheets: dict[int, str], fight: str | None,
                   before: dict | None) -> tuple[dict[int, str], str | None, dict]:
            back, fight = revert(sheets, fight, before)  # a retold turn: what the old narration did goes first
            changed, after, record = apply({**sheets, **back}, fight, planned)
            if fight is not None and after is not None:  # the fight went on: the turn passes to the next player
                after = fight_from_json(after).after_narration().to_json()
            if after != fight:
                record["fight_before"] = fight  # undo and retry put it back
            return {**back, **changed}, after, {**record, "requests": requests}

        return cls(posted_narration(text, names), settle)
