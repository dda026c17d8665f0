"""The DM's voice at generation time (engine/textgen/voice.py): the guard's rules, then the bundled model
drawing a narration that its prompt pushes into the first person."""
from __future__ import annotations


import pytest

from engine.generation import GenerationSettings
from engine.table.narration import voice_faults
from engine.textgen.base import GenRequest, Prompt
from engine.textgen.voice import Voice, VoiceGuard, inside_quotes

VOCAB = [(0, " I"), (1, "I"), (2, " my"), (3, " We"), (4, " mine"), (5, ":"), (6, ":**"), (7, " the"),
         (8, "us"), (9, " I'm"), (10, " Inside")]
GUARD = VoiceGuard(VOCAB)
PARTY = Voice(("Bram", "Ilsa"))


def test_first_person_words_are_banned_outside_quotes_and_allowed_inside():
    banned = set(GUARD.banned("The door opens. ", PARTY))
    assert {0, 1, 2, 3, 9} <= banned and not {4, 7, 10} & banned
    inside = set(GUARD.banned('The innkeeper leans in. "', PARTY))
    assert not {0, 1, 2, 3, 9} & inside  # an NPC says "I"
    assert set(GUARD.banned('"Run," he says. "I', PARTY)) == set()  # still inside the quote
    assert {0, 2} <= set(GUARD.banned('"Run!" The', PARTY))  # the quote closed


def test_a_bare_piece_is_banned_only_where_a_word_starts():
    assert 1 in GUARD.banned("", PARTY) and 1 in GUARD.banned("The hall.\n", PARTY)
    assert 8 not in GUARD.banned("The foc", PARTY)  # "focus": a piece of a word, not "us"
    assert 8 in GUARD.banned("the end (", PARTY)


def test_a_players_name_at_a_line_start_cannot_become_a_speakers_label():
    assert {5, 6} <= set(GUARD.banned("The inn is warm.\nBram", PARTY))
    assert {5, 6} <= set(GUARD.banned("**Ilsa", PARTY)) and {5, 6} <= set(GUARD.banned("1. Bram", PARTY))
    assert not {5, 6} & set(GUARD.banned("The inn is warm. Bram", PARTY))  # inside a line: prose
    assert not {5, 6} & set(GUARD.banned("Mira", PARTY))  # not a player


def test_quotes_are_followed_per_line():
    assert inside_quotes('He says, "Wait') and not inside_quotes('He says, "Wait."')
    assert inside_quotes("«Стой") and not inside_quotes('He says, "Wait\nThe end')


DIARY = Prompt(system="Continue the text.", user="Write the next lines of Bram's diary, in his own words.",
               continuation="Dear diary, today")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_bundled_model_draws_no_first_person_when_its_voice_is_kept(text_backend, seed):
    import torch

    settings = GenerationSettings(max_new_tokens=60, do_sample=True, temperature=0.9)
    request = GenRequest(text_backend.render(DIARY), settings, Voice(("Bram",)))
    torch.manual_seed(seed)
    (kept,) = text_backend.generate_batch([request], lambda i, piece: None, lambda i: False)
    assert kept.strip() and voice_faults(kept, {"Bram"}) == [], kept


def test_without_a_voice_the_same_prompt_writes_in_the_first_person(text_backend):
    """The guard is what keeps the voice: the unguarded model writes the diary as 'I' (the test can fail)."""
    import torch

    settings = GenerationSettings(max_new_tokens=60, do_sample=True, temperature=0.9)
    faults = 0
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        (raw,) = text_backend.generate_batch([GenRequest(text_backend.render(DIARY), settings)],
                                             lambda i, piece: None, lambda i: False)
        faults += bool(voice_faults(raw, {"Bram"}))
    assert faults >= 1
