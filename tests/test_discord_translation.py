"""A Russian table through SimCord: players write and read Russian while the engine works in English.

The translator is a real HTTP server on loopback (tests/translate_server.py) answering the Yandex
endpoints that yandexfreetranslate calls; its "translation" is a small dictionary plus Latin <->
Cyrillic transliteration, so an English word that reaches a player would be plain to see.
"""
from __future__ import annotations

import json

import re
import sqlite3

import pytest
from discord_world import ADMIN_ROLE, reply_text
from sd_server import ServerThread
from cogs.render import WRITING
from test_discord import buttons, close_services, make_bot, model, simcord_bot, start, world  # noqa: F401 (fixtures)
from translate_server import TranslateServer, fake_translate

pytestmark = pytest.mark.simcord(settle_timeout=120)
LATIN_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
NARRATION = '*Aria draws her sword.* "Who is there?" asks the innkeeper. The dragon sleeps.'


@pytest.fixture
def translator():
    thread = ServerThread(TranslateServer())
    yield thread.start()
    thread.stop()


@pytest.fixture
def bot_config(make_config, translator):
    return make_config(
        llm={"generation": {"max_new_tokens": 8}}, memory={"summarize_every": 0}, runner={"batch_wait_ms": 5},
        discord={"admin_role": ADMIN_ROLE},
        translation={"provider": "yandex", "url": translator.url, "timeout_s": 2.0, "pause_after": 2,
                     "pause_s": 60.0})


async def russian_table(world):
    result = await world.slash(world.gm, world.table, "dm start", premise="Таверна на краю леса.", language="ru")
    assert "🌐 Played in `ru`" in reply_text(result)
    assert "Таверна на краю леса." in reply_text(result)  # the table reads the premise as it was written
    campaign = await world.store.campaign_for_channel(world.table.id)
    assert campaign.premise.startswith("Tavern ")  # the model reads it in its own language
    return campaign


def edits_of_original(world) -> list[str]:
    return [str((e.json or {}).get("content")) for e in world.requests
            if e.method == "PATCH" and e.path.endswith("/messages/@original")]


async def test_players_write_and_read_russian_while_the_prompt_is_english(world, model, translator):
    campaign = await russian_table(world)
    await world.alice.send(world.table, "Я достаю свой меч и иду в таверну.")
    model.script = NARRATION
    edits_before = len(edits_of_original(world))
    posted = reply_text(await world.slash(world.alice, world.table, "dm continue"))

    # The model saw English: the action translated, labelled with the player's name.
    prompt = model.calls[-1][0]
    assert "Aria: I draw my sword and go into tavern." in prompt and "достаю" not in prompt
    assert "The campaign: Tavern " in prompt and "Таверна" not in prompt
    # The players read Russian, with the markup and the quotes in place and the name kept as a name.
    assert posted.startswith("*Aria дравс хер меч.* \"") and "трактирщик" in posted and "дракон спит" in posted
    assert [w for w in LATIN_WORD.findall(posted) if w != "Aria"] == []
    for edit in edits_of_original(world)[edits_before:]:  # not even while streaming does English show
        assert [w for w in LATIN_WORD.findall(edit.replace(WRITING, "")) if w != "Aria"] == [], edit

    # Inside, the story and the memories are English; what players wrote and read is kept beside it.
    turn = await world.store.last_turn(campaign.id)
    assert turn.narration == NARRATION and turn.shown == posted
    (action,) = turn.actions
    assert (action.text, action.original) == ("I draw my sword and go into tavern.", "Я достаю свой меч и иду в таверну.")
    memories = [m.shown for m in await world.store.memories(campaign.id)]
    assert "Aria: I draw my sword and go into tavern." in memories and NARRATION in memories
    assert await world.store.glossary(campaign.id) == {"Aria": "Aria"}  # filled from the players' names


async def test_the_glossary_keeps_names_both_ways(world, model, translator):
    campaign = await russian_table(world)
    added = reply_text(await world.slash(world.alice, world.table, "dm glossary add", source="Брам", target="Bram"))
    assert added == "📖 **Брам** ↔ **Bram**"
    await world.bob.send(world.table, "Привет, Брам! Я открываю дверь.")
    model.script = "Bram opens the door. Bram says hello."
    posted = reply_text(await world.slash(world.bob, world.table, "dm continue"))
    assert "Bram: Hello, Bram! I open door." in model.calls[-1][0]
    assert posted == "Брам опенс тхе дверь. Брам говорит привет."

    listed = reply_text(await world.slash(world.bob, world.table, "dm glossary show"))
    assert "Брам ↔ Bram" in listed and "Bram (kept as it is)" in listed  # Bob's nick joined by itself
    gone = reply_text(await world.slash(world.gm, world.table, "dm glossary remove", source="брам"))
    assert "left the glossary" in gone and "Брам" not in await world.store.glossary(campaign.id)
    missing = reply_text(await world.slash(world.gm, world.table, "dm glossary remove", source="Гэндальф"))
    assert "has no entry" in missing
    blank = reply_text(await world.slash(world.gm, world.table, "dm glossary add", source=" ", target="x"))
    assert "Give both" in blank


async def test_a_broken_translator_leaves_the_turn_untranslated_tells_once_and_is_tried_again(world, model, translator):
    campaign = await russian_table(world)
    translator.mode = "down"
    await world.alice.send(world.table, "Я открываю дверь.")
    model.script = "The door creaks open."
    first = reply_text(await world.slash(world.alice, world.table, "dm continue"))
    assert first.startswith("The door creaks open.") and "translation is unavailable" in first
    assert [a.original for a in (await world.store.last_turn(campaign.id)).actions] == [None]  # kept as written

    asked = len(translator.texts)
    await world.alice.send(world.table, "Кто там?")
    second = reply_text(await world.slash(world.alice, world.table, "dm continue"))
    assert second == "The door creaks open."  # told once, not at every turn
    assert len(translator.texts) == asked  # paused: the broken service is left alone for a while

    translator.mode = "ok"
    await world.env.advance_time(61)
    await world.alice.send(world.table, "Привет!")
    third = reply_text(await world.slash(world.alice, world.table, "dm continue"))
    assert third == fake_translate("The door creaks open.", "en", "ru") == "Тхе дверь цреакс открываю."
    assert "Aria: Hello!" in model.calls[-1][0]

    translator.mode = "garbage"  # a new outage is told again
    await world.alice.send(world.table, "Кто там?")
    fourth = reply_text(await world.slash(world.alice, world.table, "dm continue"))
    assert "translation is unavailable" in fourth


async def test_language_setting_and_a_bot_without_translation(world, model, translator):
    campaign = await russian_table(world)
    changed = reply_text(await world.slash(world.gm, world.table, "dm settings", name="language", value="en"))
    assert changed.startswith("✅ language set.") and "`language` = en" in changed
    assert (await world.store.get_campaign(campaign.id)).language == "en"
    await world.alice.send(world.table, "I open the door.")
    model.script = "The door creaks open."
    asked = len(translator.texts)
    assert reply_text(await world.slash(world.alice, world.table, "dm continue")) == "The door creaks open."
    assert len(translator.texts) == asked  # an English campaign never calls the translator
    bad = reply_text(await world.slash(world.gm, world.table, "dm settings", name="language", value="русский"))
    assert "not a language code" in bad
    refused = reply_text(await world.slash(world.gm, world.table, "dm settings", name="language", value="rus"))
    assert "two-letter" in refused and "Traceback" not in refused
    assert (await world.store.get_campaign(campaign.id)).language == "en"  # nothing changed


async def test_a_pinned_fact_is_kept_in_the_models_language(world, model, translator):
    campaign = await russian_table(world)
    added = reply_text(await world.slash(world.gm, world.table, "dm memory add", fact="Дракон спит в таверне."))
    (memory,) = await world.store.memories(campaign.id)
    assert memory.pinned and memory.text == fake_translate("Дракон спит в таверне.", "ru", "en")
    assert memory.text.startswith("Dragon sleeps") and memory.text in added
    # The turn's prompt carries the fact in English, beside the English story.
    await world.alice.send(world.table, "Я иду в таверну.")
    model.script = "The dragon snores."
    await world.slash(world.alice, world.table, "dm continue")
    assert memory.text in model.calls[-1][0] and "Дракон" not in model.calls[-1][0]

    # How a character looks goes to picture prompts in the model's language too.
    looked = reply_text(await world.slash(world.gm, world.table, "dm look", name="Aria", description="Мой меч."))
    assert (await world.store.looks(campaign.id)) == {"Aria": "My sword."} and "My sword." in looked

    translator.mode = "down"  # the fact is kept as written, and the admin is told why
    kept = reply_text(await world.slash(world.gm, world.table, "dm memory add", fact="Кто там?"))
    assert "translation is unavailable" in kept
    assert [m.text for m in await world.store.memories(campaign.id) if m.pinned][-1] == "Кто там?"


# --- /dm memory show: stored in English, read in Russian --------------------------------------------

def page_lines(text: str) -> list[str]:
    """A memory page's lines under its head."""
    return text.splitlines()[1:]


async def russian_memories(world, model):
    """A Russian table that remembers 11 pinned facts and one turn (an action and the narration)."""
    campaign = await russian_table(world)
    for n in range(11):
        await world.slash(world.gm, world.table, "dm memory add", fact=f"Дракон {n} спит.")
    await world.alice.send(world.table, "Я открываю дверь.")
    model.script = "The dragon sleeps."
    await world.slash(world.alice, world.table, "dm continue")
    memories = await world.store.memories(campaign.id)
    assert [m.text for m in memories if m.pinned] == [f"Dragon {n} sleeps." for n in range(11)]  # stored in English
    assert len(memories) == 13
    return campaign, memories


async def test_memory_show_pages_in_the_players_language_and_keeps_the_stored_text(world, model, translator):
    campaign, memories = await russian_memories(world, model)
    asked = len(translator.texts)
    shown = await world.slash(world.alice, world.table, "dm memory show")
    page1 = reply_text(shown)
    assert page1.splitlines()[0] == "**What the DM remembers** (13; page 1/2)"
    assert page_lines(page1) == [f"📌 `#{m.id}` Дракон {n} спит." for n, m in enumerate(memories[:10])]
    assert translator.texts[asked:] == [m.text for m in memories[:10]]  # only the page shown was translated
    assert [m.text for m in await world.store.memories(campaign.id)] == [m.text for m in memories]  # unchanged

    asked, requests = len(translator.texts), len(world.requests)
    page2 = reply_text(await world.click(world.alice, shown.response, "Next"))
    assert page2.splitlines()[0] == "**What the DM remembers** (13; page 2/2)" and "Translating" not in page2
    # Discord waits 3 s for an answer, a translator may take longer: the click is answered at once with
    # the page shown so far and a line saying the next one is being translated.
    (answer,) = [e.json["data"]["content"]
                 for _, e in world.requests.since(requests, "POST", "/interactions/*/callback")]
    assert answer == page1 + "\n-# 🌐 Translating page 2…"
    by_text = {m.shown: m.id for m in memories[10:]}
    assert sorted(page_lines(page2)) == sorted([
        f"📌 `#{by_text['Dragon 10 sleeps.']}` Дракон 10 спит.",
        f"📝 `#{by_text['Aria: I open door.']}` Aria: Я открываю дверь.",  # the speaker's name stays a name
        f"📝 `#{by_text['The dragon sleeps.']}` Тхе дракон спит."])
    # The narration's sentence was translated when it was posted: the cache serves it.
    assert sorted(translator.texts[asked:]) == ["Dragon 10 sleeps.", "I open door."]
    assert buttons(shown) == {"Previous": False, "Next": True}

    asked = len(translator.texts)
    assert reply_text(await world.click(world.alice, shown.response, "Previous")) == page1
    assert len(translator.texts) == asked  # paging back costs the translator nothing
    assert buttons(shown) == {"Previous": True, "Next": False}
    assert [m.text for m in await world.store.memories(campaign.id)] == [m.text for m in memories]


async def test_memory_show_with_the_translator_down_shows_the_stored_text_and_says_why(world, model, translator):
    campaign, memories = await russian_memories(world, model)
    translator.mode = "down"
    shown = await world.slash(world.alice, world.table, "dm memory show")
    page1 = reply_text(shown)
    *lines, note = page_lines(page1)
    assert lines == [f"📌 `#{m.id}` Dragon {n} sleeps." for n, m in enumerate(memories[:10])]
    assert note == "-# ⚠️ Shown untranslated, as stored: the translator is unavailable (Yandex answered HTTP 500)."
    assert "Dungeon Master" not in page1 and "Traceback" not in page1
    page2 = reply_text(await world.click(world.alice, shown.response, "Next"))
    assert "page 2/2" in page2 and "📌 `#" + str(memories[10].id) + "` Dragon 10 sleeps." in page2
    assert page2.splitlines()[-1] == note
    assert buttons(shown) == {"Previous": False, "Next": True}  # the buttons work again

    asked = len(translator.texts)  # two failures in a row: translation pauses, and the page says so
    back = reply_text(await world.click(world.alice, shown.response, "Previous"))
    assert page_lines(back)[:-1] == lines and len(translator.texts) == asked
    assert page_lines(back)[-1] == ("-# ⚠️ Shown untranslated, as stored: the translator is unavailable "
                                    "(translation is paused after 2 failures: Yandex answered HTTP 500).")

    translator.mode = "ok"  # back after the pause: the page is translated again
    await world.env.advance_time(61)
    again = reply_text(await world.click(world.alice, shown.response, "Next"))
    assert "📌 `#" + str(memories[10].id) + "` Дракон 10 спит." in page_lines(again) and "⚠️" not in again
    assert [m.text for m in await world.store.memories(campaign.id)] == [m.text for m in memories]


async def test_memory_show_of_an_english_campaign_is_the_stored_text(world, model, translator):
    await world.slash(world.gm, world.table, "dm start", premise="A tavern at the edge of the wood.")
    campaign = await world.store.campaign_for_channel(world.table.id)
    await world.slash(world.gm, world.table, "dm memory add", fact="The dragon sleeps *under* the inn.")
    (memory,) = await world.store.memories(campaign.id)
    asked = len(translator.texts)
    shown = reply_text(await world.slash(world.alice, world.table, "dm memory show"))
    assert page_lines(shown) == [f"📌 `#{memory.id}` The dragon sleeps \\*under\\* the inn."]
    assert len(translator.texts) == asked  # an English campaign never calls the translator


async def test_memory_show_translates_only_the_opening_a_line_shows(world, model, translator):
    campaign = await russian_table(world)
    await world.slash(world.gm, world.table, "dm memory add", fact=" ".join(f"Дракон {n} спит." for n in range(40)))
    (memory,) = await world.store.memories(campaign.id)
    sentences = [f"Dragon {n} sleeps." for n in range(40)]
    assert memory.text == " ".join(sentences)
    asked = len(translator.texts)
    (line,) = page_lines(reply_text(await world.slash(world.alice, world.table, "dm memory show")))
    sent = translator.texts[asked:]
    assert sent == sentences[:len(sent)] and 8 <= len(sent) < 20  # whole sentences, as many as a line needs
    assert line.startswith(f"📌 `#{memory.id}` Дракон 0 спит. Дракон 1 спит.") and line.endswith("…")
    assert len(line) <= len(f"📌 `#{memory.id}` ") + 150


async def test_a_story_card_is_kept_in_the_models_language_and_its_keys_in_both(world, model, translator):
    campaign = await russian_table(world)
    written = "Трактирщик спит в таверне."
    added = reply_text(await world.slash(world.gm, world.table, "dm card add", keys="трактирщик", text=written))
    (card,) = await world.store.cards(campaign.id)
    assert card.written == written and card.text == fake_translate(written, "ru", "en")
    assert card.keys == ("трактирщик", "innkeeper") and card.text in added
    await world.alice.send(world.table, "Я иду в таверну, трактирщик!")  # the key as the players write it
    model.script = "The innkeeper snores."
    await world.slash(world.alice, world.table, "dm continue")
    assert card.text in model.calls[-1][0] and written not in model.calls[-1][0]
    await world.alice.send(world.table, "Я открываю дверь.")  # no key here, but the last narration had one
    await world.slash(world.alice, world.table, "dm continue")
    assert card.text in model.calls[-1][0]


async def test_a_sheets_free_text_reaches_the_model_in_its_language(world, model, translator):
    campaign = await russian_table(world)
    for field, value in (("class", "дракон"), ("conditions", "спит")):
        await world.slash(world.alice, world.table, "dm sheet set", field=field, value=value)
    await world.slash(world.alice, world.table, "dm inventory add", item="меч", quantity=2)
    await world.alice.send(world.table, "Я открываю дверь.")
    model.script = "The door opens."
    await world.slash(world.alice, world.table, "dm continue")
    assert "The party:\n- Aria (dragon 1): HP 10/10, AC 10, sleeps; carries 2 sword" in model.calls[-1][0]
    stored = json.loads((await world.store.sheets(campaign.id))[world.alice.id])  # the sheet keeps what was typed
    assert (stored["class"], stored["conditions"], stored["inventory"]) == ("дракон", ["спит"], {"меч": 2})


async def test_a_recap_is_told_in_the_tables_language_and_offered_after_a_long_pause(world, model, translator):
    campaign = await russian_table(world)
    refused = await world.slash(world.alice, world.table, "dm recap")
    assert refused.ephemeral and "Nothing has happened yet" in reply_text(refused)
    await world.alice.send(world.table, "Я открываю дверь.")
    model.script = "The door opens onto a dark hall."
    await world.slash(world.alice, world.table, "dm continue")
    model.script = "The heroes opened the door and the dragon sleeps."
    told = await world.slash(world.bob, world.table, "dm recap")
    text = reply_text(told)
    assert not told.ephemeral and text.startswith("📖 ") and "дракон спит" in text
    assert [w for w in LATIN_WORD.findall(text) if w != "Aria"] == []
    assert "Lately:\nAria: I open door.\nDM: The door opens onto a dark hall." in model.calls[-1][0]

    with sqlite3.connect(world.services.config.storage.path) as conn:  # the last turn was two days ago
        conn.execute("UPDATE turns SET created = created - 48 * 3600 WHERE campaign_id = ?", (campaign.id,))
    await world.alice.send(world.table, "Я иду в таверну.")
    model.script = "The tavern is warm."
    back = reply_text(await world.slash(world.alice, world.table, "dm continue"))
    assert "48 hours ago: /dm recap tells the story so far" in back
