"""The prompt within its token budget, counted with the bundled model's own tokenizer and chat template."""
from __future__ import annotations

import pytest

from engine.errors import BadInput
from engine.memory.recall import Recalled
from engine.table.prompt import INSTRUCTIONS, build_prompt, cut_action
from engine.records import Action, Campaign, Memory, Turn

CAMPAIGN = Campaign(1, 100, "The Sunken Crown", "A drowned kingdom rises from the sea.", "grim and short", "en", {}, True, 0.0)


def action(i: int, name: str, text: str, turn_id: int | None = None) -> Action:
    return Action(i, 1, 1000 + i, name, text, 0.0, turn_id)


def turn(number: int) -> Turn:
    acts = (action(100 + number, "Ann", f"I search room {number} for the lost key."),)
    return Turn(number, 1, number, f"Narration {number}: the candles of room {number} flicker and go out.", acts, 0.0)


def memory(i: int, text: str, pinned: bool = False) -> Memory:
    return Memory(i, 1, "fact" if pinned else "exact", text, None, "all-MiniLM-L6-v2", None, None, pinned, 0.0)


TURNS = [turn(n) for n in range(1, 9)]
ACTIONS = [action(1, "Ann", "I light a torch."), action(2, "Bram", "I draw my axe and guard the door."),
           action(3, "Cira", "I read the runes on the wall.")]
PINNED = Recalled(memory(1, "Bram owes the smith Tolda 30 gold coins.", pinned=True), None)
RECALLED = [Recalled(memory(2, "The cellar password is blue heron."), 0.81),
            Recalled(memory(3, "The sword is called Dawnbreaker."), 0.42)]


def build(backend, budget: int, **kwargs):
    parts = dict(memories=[PINNED, *RECALLED], turns=TURNS, actions=ACTIONS)
    parts.update(kwargs)
    return build_prompt(CAMPAIGN, render=backend.render, count_tokens=backend.count_tokens, budget=budget, **parts)


def test_everything_fits_in_a_large_budget(text_backend):
    built = build(text_backend, 4000)
    assert (built.turns_used, built.memories_used) == (8, 3)
    assert built.tokens == text_backend.count_tokens(built.rendered)
    assert built.rendered == text_backend.render(built.prompt)
    assert INSTRUCTIONS in built.rendered and "The campaign: A drowned kingdom rises from the sea." in built.rendered
    assert "Style: grim and short" in built.rendered
    assert built.rendered.endswith("<|im_start|>assistant\n")


def test_prompt_stays_within_every_budget_dropping_the_oldest_turns_first(text_backend):
    full = build(text_backend, 4000)
    used = []
    for budget in (full.tokens, full.tokens - 1, full.tokens - 60, full.tokens - 150, full.tokens - 250):
        built = build(text_backend, budget)
        assert built.tokens <= budget
        assert built.tokens == text_backend.count_tokens(built.rendered)
        kept = [t.number for t in TURNS if f"Narration {t.number}:" in built.rendered]
        assert kept == list(range(9 - built.turns_used, 9))  # always the newest ones
        used.append(built.turns_used)
    assert used[0] == 8 and used[1] == 7 and used == sorted(used, reverse=True) and used[-1] < used[2]


def test_at_a_small_budget_the_newest_turn_is_there_and_the_oldest_is_not(text_backend):
    no_turns = build(text_backend, 4000, turns=[])
    built = build(text_backend, no_turns.tokens + 60)
    assert 1 <= built.turns_used < 8
    assert "Narration 8:" in built.rendered and "I search room 8" in built.rendered
    assert "Narration 1:" not in built.rendered and "room 1 " not in built.rendered
    assert built.memories_used == 3  # memories go only when the story is gone


def test_every_action_is_labelled_with_its_player_in_order(text_backend):
    built = build(text_backend, 4000)
    lines = ["Ann: I light a torch.", "Bram: I draw my axe and guard the door.", "Cira: I read the runes on the wall."]
    assert "What the players do now:\n" + "\n".join(lines) in built.prompt.user
    assert "What the players do now:\n" + "\n".join(lines) in built.rendered


def test_pinned_memories_outlast_recalled_ones(text_backend):
    pinned_only = build(text_backend, 4000, turns=[], memories=[PINNED])
    with_best = build(text_backend, 4000, turns=[], memories=[PINNED, RECALLED[0]])
    built = build(text_backend, pinned_only.tokens)
    assert (built.turns_used, built.memories_used) == (0, 1)
    assert "Bram owes the smith Tolda 30 gold coins." in built.rendered
    assert "blue heron" not in built.rendered and "Dawnbreaker" not in built.rendered
    built = build(text_backend, with_best.tokens)  # room for one recalled memory: the best-scored one
    assert built.memories_used == 2
    assert "blue heron" in built.rendered and "Dawnbreaker" not in built.rendered
    assert built.rendered.index("Tolda") < built.rendered.index("blue heron")  # pinned first
    no_memories = build(text_backend, 4000, turns=[], memories=[])
    built = build(text_backend, no_memories.tokens)  # pinned facts go last of all
    assert built.memories_used == 0 and "Tolda" not in built.rendered


def test_cut_action():
    text = "I climb " + "the very tall tower " * 20 + "and wave."
    cut, was_cut = cut_action(text, 50)
    assert was_cut is True and cut.endswith(" …")
    assert len(cut) <= 52 and text.startswith(cut[:-2])
    assert not cut[:-2].endswith(" ") and text[len(cut) - 2] == " "  # cut at a word end
    assert cut_action("  I wait.  ", 50) == ("I wait.", False)
    assert cut_action("x" * 80, 50) == ("x" * 50 + " …", True)  # no space: a hard cut


def test_long_actions_are_cut_in_the_prompt(text_backend):
    long = action(4, "Dara", "I shout " + "louder and " * 60 + "then stop.")
    built = build(text_backend, 4000, actions=[*ACTIONS, long], action_limit=80)
    expected, was_cut = cut_action(long.text, 80)
    assert was_cut and f"Dara: {expected}" in built.rendered
    assert "then stop." not in built.rendered


def test_extra_direction_is_given_to_the_dm(text_backend):
    built = build(text_backend, 4000, extra="a storm breaks")
    assert "(Direction for the DM: a storm breaks)" in built.rendered


def test_no_actions_means_the_story_moves_on(text_backend):
    built = build(text_backend, 4000, actions=[])
    assert "What the players do now:\n(nothing: the story moves on)" in built.rendered


def test_actions_over_budget_leave_the_newest_for_the_next_turn(text_backend):
    many = [action(i, f"P{i}", "I do something quite long and elaborate with my sword and shield.") for i in range(30)]
    for budget in (300, 700, 1000):  # 30 actions take ~510 tokens: more than half of these budgets
        built = build(text_backend, budget, actions=many)
        assert built.tokens <= budget and 1 <= len(built.actions) < 30
        assert list(built.actions) == many[: len(built.actions)]  # the oldest go first
        assert f"P{len(built.actions) - 1}: I do" in built.rendered and f"P{len(built.actions)}: I do" not in built.rendered
    # a retry's actions are its own: all stay, shortened to fit
    kept = build(text_backend, 700, actions=many[:8], may_defer=False)
    assert kept.tokens <= 700 and list(kept.actions) == many[:8]


def test_one_action_too_long_for_the_budget_is_shortened_not_refused(text_backend):
    huge = [action(1, "Ann", "I sing " + "a very long song about the sea and the stars " * 22)]  # ~1000 characters
    built = build(text_backend, 260, actions=huge, memories=[], turns=[])
    assert built.tokens <= 260 and list(built.actions) == huge
    assert "Ann: I sing a very long song" in built.rendered and built.rendered.count("the sea") < 22
    with pytest.raises(BadInput) as caught:  # only what no player wrote can still be too long
        build_prompt(Campaign(1, 1, "c", "A premise. " * 200, "", "en", {}, True, 0.0), memories=[], turns=[],
                     actions=huge, render=text_backend.render, count_tokens=text_backend.count_tokens, budget=300)
    assert "prompt budget of 300" in str(caught.value) and "premise" in str(caught.value)


def test_continuation_shape_for_plain_models(text_backend):
    built = build_prompt(
        CAMPAIGN, memories=[PINNED], turns=TURNS[-2:], actions=ACTIONS, render=lambda p: p.continuation,
        count_tokens=text_backend.count_tokens, budget=4000,
    )
    text = built.rendered
    assert text == built.prompt.continuation
    assert text.startswith(INSTRUCTIONS)
    assert text.endswith("Ann: I light a torch.\nBram: I draw my axe and guard the door.\n"
                         "Cira: I read the runes on the wall.\nDM:")
    assert "- Bram owes the smith Tolda 30 gold coins." in text and "DM: Narration 8:" in text
    assert "Narrate what happens next." not in text  # instructions for chat models only


def test_narration_cleaning_drops_a_players_line_at_the_start_and_cuts_at_the_next_speaker():
    from engine.table.narration import clean_narration

    names = {"Bram", "Ilsa"}
    assert clean_narration("Bram: I attack the troll!\nThe troll roars and swings.", names) == "The troll roars and swings."
    assert clean_narration("DM: Bram: I hide.\nIlsa: me too\nThe night is quiet.", names) == "The night is quiet."
    assert clean_narration("The door opens.\nIlsa: I step in.\nDM: She sees", names) == "The door opens."
    assert clean_narration("DM: The wind howls. Bram: is not a line start.", names) == (
        "The wind howls. Bram: is not a line start.")
    assert clean_narration("Bram: only the player speaks", names) == ""
    assert clean_narration("The door opens.", set()) == "The door opens."


def test_a_narration_cut_by_the_token_limit_ends_at_its_last_whole_sentence():
    from engine.table.narration import defuse_mentions, whole_sentences

    assert whole_sentences("The door opens. A cold wind blows. It goes without saying") == (
        "The door opens. A cold wind blows.")
    assert whole_sentences('"Run!" she cries. The torch gutters and') == '"Run!" she cries.'
    assert whole_sentences("Дверь открывается. Ветер воет, и") == "Дверь открывается."
    assert whole_sentences("The innkeeper (a big man) waits…") == "The innkeeper (a big man) waits…"
    assert whole_sentences("no sentence ends here at all") == "no sentence ends here at all"  # kept
    assert whole_sentences("Mr. Tolda waits. v1.5 of") == "Mr. Tolda waits."
    assert defuse_mentions("@everyone and @HERE, <@12> <@!13> <@&14> mail@here.com") == (
        "@\u200beveryone and @\u200bHERE, @\u200bsomeone @\u200bsomeone @\u200brole mail@\u200bhere.com")
