"""The game's rules and state (dice, character sheets, markers, combat, quests): the next issues fill it.

It sits above store/ and jobs/ and below table/, which puts the party and the fight into the prompt.
"""
