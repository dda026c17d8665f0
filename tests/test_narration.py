"""The DM's voice: narration in the second or third person, never a player's lines (engine/table/narration.py)."""
from __future__ import annotations

import pytest

from engine.table.narration import (clean_narration, ends_at_sentence, first_person, keep_voice, player_line, sentences,
                              voice_faults)
from engine.table.kept_text import posted_narration

NAMES = {"Bram", "Ilsa", "Kel"}


@pytest.mark.parametrize("sentence", [
    "As I took my place at the bar, the barkeep nodded.",
    "We walk into the tavern.",
    "The guard stares at me.",
    "Clenching my fists, the goblins scatter.",
    "Then I ran.",
    "I'm Grimm's Shadow Lord.",
    "Many of us know the tale.",
])
def test_first_person_outside_quotes_is_found(sentence):
    assert first_person(sentence)


@pytest.mark.parametrize("sentence", [
    '"I have no rooms," the innkeeper says.',
    "The innkeeper shakes his head: “I have no rooms, and my wife agrees.”",
    "«Я иду за тобой», — говорит он, and the old man, «I know you», smiles.",
    "„Ich bin hier“, ruft sie.",
    'She whispers, "We are not alone here',  # a quote left open runs to the end of the line
    "You push open the door; Bram follows you inside.",
    "King Thoros I ruled the mountain for forty years.",  # a numeral, not a narrator
    "The mine swallows the light. Ilsa's dagger gleams.",
])
def test_third_person_and_quoted_dialogue_are_not_first_person(sentence):
    assert not first_person(sentence)
    assert voice_faults(sentence, NAMES) == []


@pytest.mark.parametrize("sentence", [
    "Bram: I draw my axe.",
    "**Ilsa:** I hide behind the barrels.",
    "1. Kel: The wolf howls.",
    'Bram says, "Let us go."',
    '"Stop right there," Ilsa shouts.',
    'Kel quietly whispers, "The door is locked."',
])
def test_a_players_line_is_found(sentence):
    assert player_line(sentence, NAMES)


@pytest.mark.parametrize("sentence", [
    "Bram draws his axe and the wolf backs away.",  # the DM may narrate what a player declared
    'The innkeeper says, "Bram owes me three coins."',  # an NPC speaks about a player
    "The DM: nothing here names a player.",
    'Brambles say nothing, "ever".',  # not a name: a word that starts with one
])
def test_narration_about_a_player_is_not_a_players_line(sentence):
    assert not player_line(sentence, NAMES)


def test_a_bare_quote_given_to_a_player_in_the_next_sentence_is_a_players_line():
    text = '"Where is the bell?" Ilsa asks. "Run!" she cries.'
    assert sentences(text) == [['"Where is the bell?"', "Ilsa asks.", '"Run!" she cries.']]
    assert voice_faults(text, NAMES) == ['"Where is the bell?"', "Ilsa asks."]
    assert keep_voice(text, NAMES) == '"Run!" she cries.'


def test_sentences_end_outside_quotes_or_where_a_quote_closes_before_a_new_sentence():
    assert sentences('"Run!" she cries. He shouts, "Go!" The torch gutters.\n\nA new paragraph') == [
        ['"Run!" she cries.', 'He shouts, "Go!"', "The torch gutters."], [], ["A new paragraph"]]
    assert sentences("1. The wolf howls. 2. The snow falls.") == [["1. The wolf howls.", "2. The snow falls."]]
    assert sentences("12. 7. I am the one. 8. 9.") == [["12. 7. I am the one.", "8. 9."]]


def test_keep_voice_drops_first_person_sentences_and_keeps_quoted_dialogue():
    text = ('As I took my place at the bar, the barkeep nodded. "I have no rooms," he says, "and my cellar '
            'is full." The fire crackles.\n\nWe walk to the door. Snow blows in.')
    assert keep_voice(text, NAMES) == ('"I have no rooms," he says, "and my cellar is full." The fire crackles.'
                                       "\n\nSnow blows in.")


def test_keep_voice_drops_a_players_line_and_an_emptied_paragraph():
    text = 'The wolf circles.\nBram says, "I will hold it off." Bram: I swing my axe.\nThe snow falls.'
    assert keep_voice(text, NAMES) == "The wolf circles.\nThe snow falls."


def test_keep_voice_keeps_the_text_when_everything_would_go():
    text = "I walk down the street. I said, \"Don't worry.\" We hide."
    assert keep_voice(text, NAMES) == text


def test_keep_voice_leaves_a_narration_in_voice_exactly_as_it_was():
    text = "  The door opens.\n\n\n“I know,” says the old woman.  "
    assert keep_voice(text, NAMES) == text


def test_russian_narration_with_guillemets_keeps_its_voice():
    text = "«Я тебя знаю», — говорит трактирщик. Ветер воет за окном."
    assert voice_faults(text, NAMES) == []
    assert keep_voice(text, NAMES) == text


def test_clean_narration_drops_numbered_and_marked_up_player_lines():
    assert clean_narration("1. Ilsa: I offer a coin.\n2. **Kel:** I nod.\nThe night is cold.", NAMES) == (
        "The night is cold.")
    assert clean_narration("The door opens.\n3. Bram: I step in.\nMore", NAMES) == "The door opens."
    assert clean_narration("In 1. Bram: stays inside a line.", NAMES) == "In 1. Bram: stays inside a line."


def test_posted_narration_keeps_the_dms_voice_and_ends_at_a_sentence_end():
    raw = ("Bram: I push the door.\nThe inn is warm. As I sit down, a stranger stares. "
           '"Who goes there?" the innkeeper asks. Ilsa says, "Friends." The fire')
    posted = posted_narration(raw, NAMES)
    assert posted == 'The inn is warm. "Who goes there?" the innkeeper asks.'
    assert voice_faults(posted, NAMES) == [] and ends_at_sentence(posted)


def test_posted_narration_ends_at_a_sentence_end_after_first_person_sentences_are_dropped():
    assert posted_narration("The door opens.\nThe story goes like this:\nI walk in. I sit down.", NAMES) == (
        "The door opens.")


def test_a_narration_of_only_a_players_line_keeps_that_line_and_a_list_number_is_nothing():
    """Issue 20: a reply that only speaks for a player was lost ("the model wrote nothing"); it is kept,
    as the model wrote it, when nothing in the DM's voice remains (the first speaker's line only)."""
    assert posted_narration("1. Ilsa: I offer a coin.\n2. Ilsa: You give", NAMES) == "1. Ilsa: I offer a coin."
    assert posted_narration("Kel: I cast a spell.\n9. Ilsa", NAMES) == "Kel: I cast a spell."
    assert posted_narration("Aria: I draw my sword and charge at the goblin!", {"Aria"}) == (
        "Aria: I draw my sword and charge at the goblin!")
    assert posted_narration("9.", NAMES) == "" and posted_narration("  \n", NAMES) == ""


def test_ends_at_sentence():
    assert ends_at_sentence('The wolf howls." ') and ends_at_sentence("Готово…")
    assert not ends_at_sentence("The wolf howls and") and not ends_at_sentence("")
