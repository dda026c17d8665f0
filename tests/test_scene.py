"""The picture prompt: what a painter needs (who, where, when, the light, the mood, the style) as
comma-separated parts, its main part within CLIP's 75 tokens, and a one-line caption."""
from __future__ import annotations

import asyncio
import re

import pytest

from engine.jobs.job import Job
from engine.records import Action, Turn
from engine.pictures.scene import CLIP_TOKENS, PLACE_QUESTION, clip_tokens, compose_picture_prompt, scene_prompt

MILL = ("The mill is dark and cold. Rain drums on the roof as the wheel creaks in the night. Bram's torch "
        "throws long shadows over sacks of rotten grain, and somewhere above, something moves.")
# What the old prompt got from the small model: prose about the story, useless to a painter.
PROSE = ("The character's actions reveal a moment in time when the story takes a turn, and the reader "
         "feels the weight of what is to come.")
LOOKS = {"Bram": "stout dwarf, red braided beard", "Mira": "young elf archer, green hood"}


def turn(number: int, narration: str, *actions: tuple[str, str]) -> Turn:
    acted = tuple(Action(i, 1, i, who, text, 0.0, number) for i, (who, text) in enumerate(actions))
    return Turn(number, 1, number, narration, acted, 0.0)


def mill_scene(**options):
    turns = [turn(11, "The door of the old mill groans open.", ("Bram", "I knock on the mill's door.")),
             turn(12, MILL, ("Bram", "I raise my torch and step into the old mill."),
                  ("Mira", "I follow Bram, my bow drawn."))]
    given = {"focus": "", "style": "oil painting, dramatic lighting", "turns": turns,
             "premise": "A haunted mill by a dark river.", "looks": LOOKS, **options}
    return compose_picture_prompt(given.pop("answer", PROSE), **given)


def parts(prompt: str) -> list[str]:
    return [p.strip() for p in prompt.split(",")]


def test_the_prompt_is_comma_separated_visual_parts_not_prose():
    picture = mill_scene()
    assert picture.prompt == ("stout dwarf, red braided beard, young elf archer, green hood, old mill, night, "
                              "torchlight, rain, eerie, tense, oil painting, dramatic lighting")
    assert not re.search(r"[.!?;:]", picture.prompt)
    assert all(1 <= len(p.split()) <= 4 for p in parts(picture.prompt)), picture.prompt
    for prose in ("character", "reveal", "moment", "story", "reader"):
        assert prose not in picture.prompt
    assert "Bram" not in picture.prompt and "Mira" not in picture.prompt  # SD knows their looks, not names


def test_order_subjects_place_time_light_mood_then_style_and_the_focus_first():
    found = parts(mill_scene(focus="the loft above the wheel.").prompt)
    order = [found.index(p) for p in ("the loft above the wheel", "stout dwarf", "young elf archer", "old mill",
                                      "night", "torchlight", "eerie", "oil painting", "dramatic lighting")]
    assert order == sorted(order), found


def test_the_model_answer_names_the_place_when_it_is_one_of_the_scene():
    answer = "The story is set in a dark and cold mill, with rain drums on the"  # what the bundled model said
    assert "dark and cold mill" in parts(mill_scene(answer=answer).prompt)


@pytest.mark.parametrize("answer", [
    "Ilsa: I ask the innkeeper for the cellar password.",  # the model echoing the story
    "The story is set in a breathtaking and atmospheric setting, with a dramatic and evocative",
    "The story takes place in a dark and mysterious realm, where the protagonist is a",
    "The story is set in a glittering palace",  # no palace in this scene
    "The story is set in a small group of dwarves in the",  # no place at all
    "",
])
def test_a_garbage_answer_gives_way_to_the_place_the_scene_names(answer):
    found = parts(mill_scene(answer=answer).prompt)
    assert "old mill" in found and not {"ilsa", "palace", "glittering palace", "realm"} & set(found)


def test_players_without_a_look_are_adventurers_and_the_latest_turn_brings_its_figures():
    tavern = "The innkeeper, a heavy man with a scarred face, leans over the bar. A bard sings by the fire."
    turns = [turn(3, tavern,
                  ("Ilsa", "I ask the innkeeper for the cellar password."), ("Kael", "I order an ale."))]
    answer = "The story is set in a tavern filled with the sounds of laughter, the smell"  # the bundled model's
    picture = compose_picture_prompt(answer, focus="", style="", turns=turns,
                                     premise="The Drowned Rat, a smoky tavern on a stormy night.", looks=LOOKS)
    assert picture.prompt == ("two adventurers, innkeeper, heavy man, smoky tavern, night, firelight, storm, "
                              "cozy, lively")
    assert picture.caption == "Turn 3: Ilsa and Kael in the smoky tavern, night, firelight, storm"


def test_a_look_named_in_the_scene_joins_even_when_its_owner_did_not_act():
    turns = [turn(5, "Tolda the smith hammers at her anvil by the forge.", ("Bram", "I pay Tolda."))]
    looks = {**LOOKS, "Tolda": "tall woman, soot-black apron"}
    found = parts(compose_picture_prompt("", focus="", style="", turns=turns, premise="", looks=looks).prompt)
    assert found[:4] == ["stout dwarf", "red braided beard", "tall woman", "soot-black apron"]
    assert "young elf archer" not in found  # Mira is not in this scene


def test_the_caption_says_in_one_line_what_was_painted():
    assert mill_scene().caption == "Turn 12: Bram and Mira in the old mill, night, torchlight, rain"
    assert mill_scene(focus="the loft").caption.startswith("Turn 12: the loft in the old mill, night")
    opening = compose_picture_prompt("", focus="", style="", turns=[], premise="A cliff at dawn.", looks={})
    assert opening.caption == "The opening scene: At the cliff, dawn" and opening.prompt == "cliff, dawn"


LONG_LOOK = ("a very tall and broad-shouldered mountain dwarf with an enormous braided crimson beard woven "
             "with golden rings, a dented iron helmet with ram horns, a patched travelling cloak of bear fur, "
             "heavy boots caked with mud, a notched battle axe on his back, a scar across his left cheek")
LONG_STYLE = ", ".join(["dark fantasy oil painting in the manner of the old flemish masters", "muted palette",
                        "chiaroscuro", "highly detailed", "cinematic composition", "volumetric light",
                        "masterpiece", "best quality", "sharp focus", "trending on artstation"] * 3)


@pytest.mark.parametrize("focus", ["", "Bram and Mira fighting the miller's ghost in the flour loft while the "
                                       "storm tears the roof off and lightning shows the river below " * 2])
def test_the_main_part_fits_clip_with_long_looks_style_and_focus(focus):
    looks = {"Bram": LONG_LOOK, "Mira": LONG_LOOK.replace("dwarf", "elf"), "Tolda": LONG_LOOK}
    picture = mill_scene(focus=focus[:200], looks=looks, style=LONG_STYLE)
    assert clip_tokens(picture.main) <= CLIP_TOKENS
    assert picture.prompt.startswith(picture.main)
    kept = parts(picture.main)
    if focus:
        assert kept[0] and focus.startswith(kept[0])  # the player's ask, first, if need be shortened
    assert "a very tall and broad-shouldered mountain dwarf" in kept[0 if not focus else 1]  # the first look
    assert "dark fantasy oil painting" in picture.main  # the style has its place in the main part
    assert picture.prompt.endswith("trending on artstation")  # and the rest of it follows
    assert "eerie" not in kept  # the mood went first
    assert picture.caption.startswith("Turn 12: " + (kept[0] if focus else "Bram and Mira in the old mill"))


def test_a_focus_of_one_endless_word_is_cut_too():
    picture = mill_scene(focus="Бром" * 50, style=LONG_STYLE)  # untranslated, no spaces: 200 letters
    assert clip_tokens(picture.main) <= CLIP_TOKENS and picture.main.startswith("Бром")
    assert "oil painting" in picture.main


def test_the_style_keeps_its_sd_syntax():
    style = "(watercolor:1.2), <lora:ghibli:0.8>, [sketch, ink], soft light"
    picture = mill_scene(style=style)
    assert picture.main.endswith(", (watercolor:1.2), <lora:ghibli:0.8>, [sketch, ink], soft light")


def test_the_least_important_parts_go_first():
    looks = {"Bram": LONG_LOOK}
    kept = parts(mill_scene(looks=looks, style="oil painting").main)
    assert {"old mill", "night", "torchlight", "oil painting"} <= set(kept)
    assert "eerie" not in kept and "a scar across his left cheek" not in kept


def test_clip_tokens_is_a_conservative_count():
    assert clip_tokens("") == 0 and clip_tokens("red, blue") == 3
    assert clip_tokens("torchlight") == 2 and clip_tokens("12") == 2 and clip_tokens("ночь") == 4


def test_clip_tokens_is_never_below_a_real_49k_bpe_on_these_prompts(text_backend):
    """No CLIP tokenizer offline: the bundled SmolLM2's byte-level BPE (49,152 pieces, close to CLIP's
    49,408) stands in for it on whole prompts of plain English. (Word by word it is harsher than CLIP,
    which keeps 'anvil' or 'elf' whole where SmolLM2 splits them.)"""
    prompts = [mill_scene().main, mill_scene(focus="the loft").main, mill_scene(looks={"Bram": LONG_LOOK}).main,
               mill_scene(style=LONG_STYLE).main, mill_scene(answer="set in a dark and cold mill").main]
    for prompt in prompts:
        assert clip_tokens(prompt) >= text_backend.count_tokens(prompt), prompt


def test_the_question_is_about_the_place_and_works_for_plain_models():
    asked = scene_prompt("DM: A wolf howls.")
    assert asked.user == PLACE_QUESTION.format(scene="DM: A wolf howls.")
    assert asked.continuation.endswith("The scene takes place in")


async def test_the_bundled_model_through_the_picture_prompt_job(services):
    """The real job on the real bundled model: whatever it answers, the prompt is a painter's."""
    store, edits = services.store, services.edits
    campaign, _ = await edits.start_campaign(31, "mill", "A haunted mill by a dark river.", "en")
    campaign, _ = await edits.set_campaign_text(campaign, "style", "oil painting, dramatic lighting")
    await edits.note_look(campaign, "Bram", "stout dwarf, red braided beard")
    for author, text in (("Bram", "I raise my torch and step into the old mill."), ("Mira", "I follow Bram.")):
        await edits.add_action(campaign.id, 1, author, text)
    pending = await store.pending_actions(campaign.id)
    await store.commit_turn(campaign.id, [a.id for a in pending], MILL)
    handle = services.runner.submit(Job(campaign.id, campaign.channel_id, "picture_prompt", payload={}))
    picture = await asyncio.wait_for(handle.result(), 120)
    found = parts(picture.prompt)
    assert found[:3] == ["stout dwarf", "red braided beard", "an adventurer"], picture.prompt
    assert any(p.endswith("mill") for p in found) and {"night", "torchlight"} <= set(found)
    assert found[-2:] == ["oil painting", "dramatic lighting"] and clip_tokens(picture.main) <= CLIP_TOKENS
    assert not re.search(r"[.!?;:]", picture.prompt) and "story" not in picture.prompt
    assert picture.caption.startswith("Turn 1: Bram and Mira in the ") and "night, torchlight" in picture.caption
