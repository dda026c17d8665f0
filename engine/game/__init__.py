"""The game's rules and state: dice (dice.py, on Avrae's d20) and the character sheet as a value
(sheets.py); storing sheets, their commands, markers, combat and quests next.

It sits above store/ and jobs/ and below table/, which puts the party and the fight into the prompt.
"""

from engine.game.dice import Roll, amount, roll
from engine.game.sheets import Sheet, sheet_from_json

__all__ = ["Roll", "Sheet", "amount", "roll", "sheet_from_json"]
