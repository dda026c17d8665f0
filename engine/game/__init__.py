"""The game's rules and state: dice now (dice.py, on Avrae's d20); character sheets, markers, combat and
quests next.

It sits above store/ and jobs/ and below table/, which puts the party and the fight into the prompt.
"""

from engine.game.dice import MAX_CHARS, MAX_DICE, MAX_SIDES, Roll, roll

__all__ = ["MAX_CHARS", "MAX_DICE", "MAX_SIDES", "Roll", "roll"]
