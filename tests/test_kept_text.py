"""What the story keeps of a narration, as it streams and when it is whole (engine/table/kept_text.py)."""
from __future__ import annotations

import pytest

from engine.table.kept_text import kept, posted_narration

NAMES = {"Bram", "Ilsa", "Aria"}
REPLIES = [
    'Bram: I push the door.\nThe inn is warm. As I sit down, a stranger stares. "Who goes there?" the innkeeper '
    'asks. Ilsa says, "Friends." The fire crackles.',
    'The door opens. I walk in. A goblin leaps! "I will eat you," it snarls. Bram: I run.\nMore rain falls.',
    'DM: The rain falls.\n\nThe tower looms. We climb. Aria says, "Up!" The stairs creak.\nIlsa: I follow.\nLater.',
    'As I enter the inn, I see a desk. "Excuse me," I said. The clerk nods. "Welcome," he says. "I am Tom."',
    "The hall is dark. What the players do now:\nBram: I wait.",
    "Аня входит в зал. Я сажусь у огня. «Я устала», — говорит она. Огонь трещит.",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_the_stream_never_shows_a_sentence_the_story_drops(reply):
    """Every prefix of the reply, as it streams character by character: what the table is shown only
    grows, and the saved narration begins with everything that was shown."""
    shown = ""
    for end in range(1, len(reply) + 1):
        now = kept(reply[:end], NAMES, final=False)
        assert now.startswith(shown), (reply[:end], shown, now)
        shown = now
    posted = posted_narration(reply, NAMES)
    assert posted.startswith(shown) and posted


def test_the_stream_shows_finished_sentences_in_the_dms_voice_only():
    assert kept("The door opens. I walk in. A goblin", NAMES, final=False) == "The door opens."
    assert kept("I walk in. I sit. The fire", NAMES, final=False) == ""  # nothing of the DM's yet
    assert kept("Br", NAMES, final=False) == "" and kept("Bram: I push the door.\nThe inn", NAMES, final=False) == ""


def test_a_quote_given_to_a_player_by_the_next_sentence_is_never_shown():
    text = '"We should go." Bram says quietly. The fire dies.'
    for end in range(1, len(text) + 1):
        assert "We should go" not in kept(text[:end], NAMES, final=False)
    assert posted_narration(text, NAMES) == "The fire dies."


def test_npc_speech_in_quotes_keeps_its_i():
    assert posted_narration('The innkeeper smiles. "I have a room for you," he says.', NAMES) == (
        'The innkeeper smiles. "I have a room for you," he says.')


@pytest.mark.parametrize("echo", [
    "(no more) Dungeon: Player: You are the Dungeon Master of a role-playing game played by a group. You've",
    "Player: I open the door.\nDungeon: The door opens.",
    "You are the Dungeon Master of a role-playing game. Narrate what happens next.",
    "What the players do now:\nBram: I wait.",
])
def test_an_echo_of_the_prompt_or_a_script_label_never_reaches_the_table(echo):
    assert posted_narration(echo, NAMES) == ""
    assert all(kept(echo[:end], NAMES, final=False) == "" for end in range(1, len(echo) + 1))


def test_the_narration_ends_where_the_prompt_is_echoed_or_a_label_starts():
    assert posted_narration("The hall is dark. The story so far:\nthe mill", NAMES) == "The hall is dark."
    assert posted_narration("Rain falls on the roof.\nUser: what now?", NAMES) == "Rain falls on the roof."
    assert posted_narration("Rain falls. Things to remember: the key.", NAMES) == "Rain falls."


def test_mentions_are_defused_in_the_stream_too():
    shown = kept("A voice calls @everyone and <@123>. The bell", NAMES, final=False)
    assert "@everyone" not in shown and "<@123>" not in shown and shown.startswith("A voice calls @")
