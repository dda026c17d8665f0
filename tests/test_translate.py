"""Translation: markup and names survive it, Yandex and LibreTranslate over a loopback server, the
text model as translator, the cache, the circuit breaker and the translation of a streaming narration.

The server (tests/translate_server.py) "translates" with a tiny dictionary plus Latin <-> Cyrillic
transliteration, so anything that should have stayed as written but reached the translator shows up
in the other script. Every await that could hang on a bug is bounded by asyncio.wait_for.
"""
from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cogs.errors import friendly
from engine.errors import BadInput, TranslatorUnavailable, Unavailable
from engine.generation import GenerationSettings
from engine.jobs.job import Job
from engine.translation.markup import complete_prefix, mask, paragraphs, pieces, unmask
from engine.jobs.runner import Runner
from engine.translation.translate import Translation, opening
from engine.translation.providers import LibreTranslateProvider, LLMProvider, YandexProvider
from engine.jobs.worker import ModelWorker
from scripted_backend import ScriptedBackend
from sd_server import ServerThread
from translate_server import TranslateServer, fake_translate

WAIT = 15.0  # seconds: far longer than anything here should take


def ru(text: str) -> str:
    return fake_translate(text, "en", "ru")


def en(text: str) -> str:
    return fake_translate(text, "ru", "en")


def translated_around(text: str, kept: list[str], into=ru) -> str:
    """What a perfect translation of `text` looks like: every piece in `kept` as written, the rest
    translated word by word (the fake translator works word by word, so this is exact)."""
    pattern = "(" + "|".join(re.escape(k) for k in sorted(kept, key=len, reverse=True)) + ")"
    parts = re.split(pattern, text)
    return "".join(part if i % 2 else into(part) for i, part in enumerate(parts))


class LibreServer(TranslateServer):
    """The translate server, plus a mode where LibreTranslate refuses the request (HTTP 400), and a
    "slow" mode that lets its sleepers go when the test ends (no handler left pending at shutdown)."""

    stopping = False

    async def _trouble(self) -> web.Response | None:
        if self.mode == "slow":
            loop = asyncio.get_running_loop()
            until = loop.time() + self.delay
            while loop.time() < until and not self.stopping:
                await asyncio.sleep(0.02)
            return web.Response(status=503, text="too late")
        return await super()._trouble()

    async def libre(self, request: web.Request) -> web.Response:
        if self.mode == "bad_request":
            await request.read()
            self.texts.append("(refused)")
            return web.json_response({"error": "'xx' is not supported"}, status=400)
        return await super().libre(request)


@pytest.fixture
def server():
    thread = ServerThread(LibreServer())
    yield thread.start()
    thread.server.stopping = True
    thread.stop()


@pytest.fixture
def yandex(server, tmp_path):
    """Fresh Yandex providers (each with its own key file unless told) pointed at the loopback server."""
    made = iter(range(1000))

    def make(timeout_s: float = 2.0, key_file: Path | None = None) -> YandexProvider:
        key_file = key_file or tmp_path / f"yandex-{next(made)}.key"
        return YandexProvider(timeout_s, str(key_file), site_url=server.url + "/",
                              api_url=server.url + "/api/v1/tr.json/")

    return make


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def bounded(awaitable, timeout: float = WAIT):
    return await asyncio.wait_for(awaitable, timeout)


async def failure(awaitable, timeout: float = WAIT) -> Unavailable:
    with pytest.raises(Unavailable) as info:
        await bounded(awaitable, timeout)
    return info.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- markup: taken apart and put together again ------------------------------------------------

CODE_BLOCK = '```py\nprint("hello world. Really!")\nx = 1\n```'
KEPT = ["*", "**", "_", "~~", "||", '"', "> ", "-# ", "<@1>", "<@&2>", "<#3>", "<:smile:1234>", "<a:wave:99>",
        "@everyone", "https://example.com/map?x=1&y=two", "`look around`", "`go north. Now`", CODE_BLOCK]
DISCORD_TEXT = (
    '*Aria draws her sword.* **Bold move!** _quietly_ ~~nothing~~ ||secret door|| "Who is there?" asks <@1>.\n'
    "> The innkeeper waves to <@&2> in <#3> <:smile:1234> and @everyone sees https://example.com/map?x=1&y=two now.\n"
    "Type `look around` or `go north. Now` to move <a:wave:99>\n\n"
    "-# a whisper from the dark\n"
    f"The map says:\n{CODE_BLOCK}\n"
    "The end"
)


@pytest.mark.parametrize("mode", ["ok", "mangle"])
async def test_discord_markup_survives_a_yandex_translation(server, yandex, mode):
    server.mode = mode
    translation = Translation(yandex(), "en")
    shown = await bounded(translation.to_players(DISCORD_TEXT, "ru", {}))

    assert shown == translated_around(DISCORD_TEXT, KEPT)
    assert shown.count("\n") == DISCORD_TEXT.count("\n") and "\n\n-# " in shown
    sent = "\n".join(server.texts)
    # Nothing kept word for word ever reached the translator, code blocks least of all.
    for piece in ["<@", "<#", ":smile:", ":wave:", "everyone", "https", "example", "look around", "north", "print",
                  "```", "*", "~", "|", '"']:
        assert piece not in sent, (piece, server.texts)
    assert all(text.strip() for text in server.texts)


def test_mask_and_unmask_round_trip_and_tolerate_translators():
    text = '**Bram** says "hi" to <@1> at https://x.io/a_b and `code`.'
    masked = mask(text, {"Bram": "Брам"})
    assert "Bram" not in masked.text and "<@1>" not in masked.text and "https" not in masked.text
    assert unmask(masked.text, masked) == text.replace("Bram", "Брам")
    # Spaces inside placeholders are tolerated; a lost mention or link is appended, lost markup dropped.
    spaced = re.sub(r"⟦(\d+)⟧", r"⟦ \1 ⟧", masked.text)
    assert unmask(spaced, masked) == text.replace("Bram", "Брам")
    lost = unmask("says hi", masked)
    assert lost.startswith("says hi ") and all(p in lost for p in ["Брам", "<@1>", "https://x.io/a_b", "`code`"])
    assert "*" not in lost and '"' not in lost
    assert unmask("⟦99⟧ oops", masked).startswith(" oops")  # a number the text never had: dropped


@pytest.mark.parametrize("text, link", [
    ("Read https://x.io/map. Then go.", "https://x.io/map"),
    ("*See https://x.io/a?b=1*, then run!", "https://x.io/a?b=1"),
    ('He said "https://x.io/door" and left.', "https://x.io/door"),
    ("Look at <https://x.io/y>, friend.", "<https://x.io/y>"),
])
def test_a_link_leaves_the_sentence_its_punctuation_and_markup(text, link):
    masked = mask(text, {})
    assert link in masked.pieces and "x.io" not in masked.text
    assert unmask(masked.text, masked) == text


@pytest.mark.parametrize("text", [
    "The door opens. A dragon sleeps inside. It w",
    "no final punctuation at all",
    "One. Two!\n\nThree?\nFour…  Five.\n\n\nSix",
    '"Who is there?" asks the innkeeper. *He nods.* ||Yes!|| Fine',
    f"Look:\n{CODE_BLOCK}\nAfter the code. Done.",
    "Before ```unclosed code. Still code",
    "  leading spaces. Trailing spaces.   ",
    "",
])
def test_pieces_join_back_exactly(text):
    got = pieces(text)
    assert "".join(p.text + p.gap for p in got) == text
    assert all(p.text or p.gap for p in got)


def test_pieces_are_sentences_and_code_blocks():
    got = pieces("One. Two!\n\nThree?\nFour")
    assert [(p.text, p.gap) for p in got] == [("One.", " "), ("Two!", "\n\n"), ("Three?", "\n"), ("Four", "")]
    got = pieces(f"Look:\n{CODE_BLOCK}\nDone.")
    assert [p.text for p in got if p.verbatim] == [CODE_BLOCK]
    assert [p.text for p in got if not p.verbatim and p.text] == ["Look:", "Done."]
    # Inline code is one piece of a sentence even with a full stop inside it.
    got = pieces("Type `go north. Now` please. Then wait.")
    assert [p.text for p in got] == ["Type `go north. Now` please.", "Then wait."]


def test_complete_prefix_of_a_growing_narration():
    full = "The door opens. A dragon sleeps inside. It wakes!\nRun."
    assert complete_prefix("") == 0
    assert complete_prefix("The door") == 0
    assert complete_prefix("The door opens.") == 0  # the sentence may go on ("opens.\" he said")
    assert complete_prefix("The door opens. A") == len("The door opens. ")
    assert complete_prefix("The door opens. A dragon sleeps inside. It w") == len("The door opens. A dragon sleeps inside. ")
    assert complete_prefix(full[: full.index("\n") + 1]) == full.index("\n") + 1
    assert complete_prefix(full) == full.index("\n") + 1
    assert complete_prefix(full + " ") == len(full) + 1
    # A code block being written holds everything from its start; a closed one counts as finished.
    assert complete_prefix("Look. ```py\nprint(1). x = 2") == len("Look. ")
    assert complete_prefix("Look. ```py\nprint(1). x = 2\n``") == len("Look. ")
    closed = "Look. ```py\nprint(1). x = 2\n```"
    assert complete_prefix(closed + " And") == len(closed)
    assert complete_prefix(closed + " And then. More") == len(closed + " And then. ")
    # Inline code still open is not a sentence end either.
    assert complete_prefix("Type `go north. Now") == 0
    assert complete_prefix("Type `go north. Now` please. Th") == len("Type `go north. Now` please. ")


# --- the glossary --------------------------------------------------------------------------------

async def test_glossary_maps_names_both_ways_and_only_whole_words(server, yandex):
    translation = Translation(yandex(), "en")
    glossary = {"Брам": "Bram", "Aria": "Aria"}

    into = await bounded(translation.to_model('*Я достаю свой меч.* "Кто там?" — говорит <@123>. Привет, Брам!',
                                              "ru", glossary))
    assert into == '*I draw my sword.* "Who there?" — says <@123>. Hello, Bram!'
    assert not any("Брам" in text for text in server.texts)

    out = await bounded(translation.to_players("Bram opens the door. Aria waits. Bram!", "ru", glossary))
    assert out == f"Брам {ru('opens the door.')} Aria {ru('waits.')} Брам!"
    assert not any("Bram" in text or "Aria" in text for text in server.texts)

    # Part of a longer word: translated as a word, not replaced.
    server.texts.clear()
    out = await bounded(translation.to_players("Brambles grow near Abram and Bram.", "ru", glossary))
    assert out == f"{ru('Brambles grow near Abram and')} Брам."
    assert server.texts == ["Brambles grow near Abram and ⟦0⟧."]
    into = await bounded(translation.to_model("Брамбл и Брам.", "ru", glossary))
    assert into == f"{en('Брамбл')} and Bram."
    # Case differences still find the name; an identity entry keeps a name from being transliterated.
    into = await bounded(translation.to_model("Я вижу aria и БРАМ.", "ru", glossary))
    assert into == "I " + en("вижу") + " Aria and Bram."


# --- Yandex ----------------------------------------------------------------------------------------

async def test_yandex_key_file_goes_where_we_said(server, yandex, tmp_path):
    home_key = Path.home() / ".YandexFreeTranslate.key"
    home_before = home_key.stat().st_mtime if home_key.exists() else None
    key_file = tmp_path / "data" / "y.key"
    key_file.parent.mkdir()
    translation = Translation(yandex(key_file=key_file), "en")
    assert await bounded(translation.to_model("Привет!", "ru", {})) == "Hello!"
    assert key_file.read_text(encoding="utf8") == "cba.fed.ihg-0-0"  # the site's SID, as the library keys it
    assert server.site_visits == 1
    assert (home_key.stat().st_mtime if home_key.exists() else None) == home_before
    # A second provider over the same file uses the saved key: no visit to the site.
    again = Translation(yandex(key_file=key_file), "en")
    assert await bounded(again.to_model("Дракон спит.", "ru", {})) == "Dragon sleeps."
    assert server.site_visits == 1


def long_narration() -> str:
    sentences = ["The door opens slowly and a cold wind blows through the hall.",
                 "A dragon sleeps inside, curled around a pile of gold coins and old bones.",
                 "Aria holds her breath and counts the steps to the far wall!",
                 "Who left the torch burning on the table?",
                 "The innkeeper said nothing about a dragon when he sold them the map…"]
    paragraphs = [" ".join(sentences[i:] + sentences[:i]) for i in range(5)]
    paragraphs[2] = "> " + paragraphs[2]
    return "\n\n".join(paragraphs[:3]) + "\n" + "\n\n".join(paragraphs[3:])


async def test_yandex_long_text_goes_in_short_pieces_and_keeps_its_paragraphs(server, yandex):
    text = long_narration()
    assert len(text) > 1500 and text.count("\n\n") == 3
    text = text + "\n\n" + text[:1000].rstrip() + "."
    assert 2300 < len(text) < 3000
    translation = Translation(yandex(), "en")
    out = await bounded(translation.to_players(text, "ru", {}))
    assert out == translated_around(text, ["> "])
    assert [len(p) > 0 for p in out.split("\n")] == [len(p) > 0 for p in text.split("\n")]
    assert all(0 < len(t) < 500 for t in server.texts)
    assert len(server.texts) == len(set(server.texts)) >= 5  # a sentence said again comes from the cache


async def test_players_paragraphs_go_whole_and_narration_sentence_by_sentence(server, yandex):
    translation = Translation(yandex(), "en")
    action = "Я достаю меч. Он тяжёлый!\n\n*Я иду в таверну.* Кто там?\n```\nкод\n```\nПривет."
    out = await bounded(translation.to_model(action, "ru", {}))
    assert out == translated_around(action, ["*", "```\nкод\n```"], into=en)
    # One request a paragraph, so the translator sees what "он" refers to; line ends and code divide.
    assert server.texts == ["Я достаю меч. Он тяжёлый!", "⟦0⟧Я иду в таверну.⟦1⟧ Кто там?", "Привет."]
    server.texts.clear()
    narration = "The dragon sleeps. It snores. Who is there?"
    assert await bounded(translation.to_players(narration, "ru", {})) == ru(narration)
    assert server.texts == ["The dragon sleeps.", "It snores.", "Who is there?"]  # as it is streamed


def test_paragraphs_keep_to_the_limit_and_join_back_exactly():
    text = "One two. Three four! Five six? Seven.\nEight. Nine."
    joined = paragraphs(pieces(text), 20)
    assert [(p.text, p.gap) for p in joined] == [("One two. Three four!", " "), ("Five six? Seven.", "\n"),
                                                ("Eight. Nine.", "")]
    assert "".join(p.text + p.gap for p in joined) == text
    assert [p.text for p in paragraphs(pieces("A very long sentence. B."), 5)] == ["A very long sentence.", "B."]


async def test_yandex_a_sentence_longer_than_its_limit_is_cut_at_spaces(server, yandex):
    words = " ".join(f"*step{i}* into the dark" for i in range(80))  # ~1800 characters, no full stop
    assert len(words) > 3 * YandexProvider.LIMIT
    translation = Translation(yandex(), "en")
    out = await bounded(translation.to_players(words, "ru", {}))
    assert out == translated_around(words, ["*"])
    assert len(server.texts) >= 3 and all(len(t) <= YandexProvider.LIMIT for t in server.texts)
    assert translation.failures == 0


async def test_yandex_needs_two_letter_language_codes(server, yandex):
    translation = Translation(yandex(), "en", failures_to_pause=2)
    with pytest.raises(BadInput, match="two-letter"):  # what /dm start and /dm settings ask first
        translation.check_language("rus")
    translation.check_language("ru")
    translation.check_language("en")  # the model's own language needs no translator
    for _ in range(3):
        error = await failure(translation.to_model("Привет!", "rus", {}))
        assert "two-letter" in str(error) and "paused" not in str(error)
    assert server.texts == []
    # One campaign's bad setting is not an outage: other campaigns' translation goes on.
    assert translation.failures == 0
    assert await bounded(translation.to_model("Привет!", "ru", {})) == "Hello!"


@pytest.mark.parametrize("mode, says", [
    ("down", "HTTP 500"),
    ("garbage", "Yandex refused"),
    ("blocked", "Yandex refused"),
    ("empty", "Yandex refused"),
    ("slow", "did not answer in time"),
])
async def test_yandex_failures_are_unavailable_and_quick(server, yandex, mode, says):
    server.mode, server.delay = mode, 3.0
    translation = Translation(yandex(timeout_s=0.5), "en", failures_to_pause=100)
    error = await failure(translation.to_model("Привет, друг.", "ru", {}), timeout=2.5)
    assert says in str(error)
    assert "captcha" not in str(error) and "Traceback" not in str(error) and "<" not in str(error)
    assert translation.failures == 1
    if mode == "blocked":
        assert server.site_visits >= 1 and server.texts == []
    else:
        assert server.texts  # it did ask
    # The same provider works once the server does.
    server.mode = "ok"
    assert await bounded(translation.to_model("Привет, друг.", "ru", {})) == "Hello, " + en("друг") + "."
    assert translation.failures == 0


async def test_circuit_breaker_pauses_then_tries_again(server, yandex):
    now = [1000.0]
    translation = Translation(yandex(), "en", failures_to_pause=2, pause_s=60.0, clock=lambda: now[0])
    server.mode = "down"
    for sentence in ["Привет.", "Дракон спит."]:
        await failure(translation.to_model(sentence, "ru", {}))
    assert translation.failures == 2
    asked = len(server.texts)
    server.mode = "ok"  # it works again, but the breaker does not know yet
    error = await failure(translation.to_model("Я иду.", "ru", {}))
    assert "paused" in str(error) and "HTTP 500" in str(error)
    assert isinstance(error, TranslatorUnavailable)  # told apart from the DM: the message names the translator
    assert friendly(error).startswith("🌐 No translation this time: translation is paused")
    now[0] += 59
    await failure(translation.to_model("Я иду.", "ru", {}))
    assert len(server.texts) == asked  # nothing reached the server while paused

    now[0] += 2
    assert await bounded(translation.to_model("Я иду.", "ru", {})) == "I go."
    assert translation.failures == 0 and len(server.texts) == asked + 1
    # Failures count from zero again: one more failure does not pause.
    server.mode = "down"
    await failure(translation.to_model("Меч.", "ru", {}))
    server.mode = "ok"
    assert await bounded(translation.to_model("Меч.", "ru", {})) == "Sword."
    # A pause that ends with the server still down pauses again after one more failure.
    server.mode = "down"
    for sentence in ["Дверь.", "Таверна."]:
        await failure(translation.to_model(sentence, "ru", {}))
    now[0] += 61
    asked = len(server.texts)
    await failure(translation.to_model("Там.", "ru", {}))
    assert len(server.texts) > asked
    asked = len(server.texts)
    error = await failure(translation.to_model("Кто?", "ru", {}))
    assert "paused" in str(error) and len(server.texts) == asked


async def test_outage_note_once_per_outage_and_campaign(server, yandex):
    translation = Translation(yandex(), "en", failures_to_pause=100)
    server.mode = "down"
    error = await failure(translation.to_model("Привет.", "ru", {}))
    note = translation.outage_note(7, error)
    assert note and "HTTP 500" in note
    assert translation.outage_note(7, error) is None
    assert translation.outage_note(8, error)  # another channel is told too, once
    assert translation.outage_note(8, error) is None
    await failure(translation.to_model("Привет.", "ru", {}))
    assert translation.outage_note(7, error) is None  # the same outage
    server.mode = "ok"
    assert await bounded(translation.to_model("Привет.", "ru", {})) == "Hello."
    server.mode = "down"
    error = await failure(translation.to_model("Меч.", "ru", {}))
    assert translation.outage_note(7, error) and translation.outage_note(8, error)
    assert translation.outage_note(7, error) is None


# --- the cache -----------------------------------------------------------------------------------

async def test_cache_saves_requests(server, yandex):
    translation = Translation(yandex(), "en")
    assert await bounded(translation.to_model("Дракон спит.", "ru", {})) == "Dragon sleeps."
    assert await bounded(translation.to_model("Дракон спит.", "ru", {})) == "Dragon sleeps."
    assert server.texts == ["Дракон спит."]
    # The same sentence around other mentions is the same masked text: the cache serves it, rightly.
    assert await bounded(translation.to_model("<@1> спит.", "ru", {})) == "<@1> sleeps."
    assert await bounded(translation.to_model("<@2> спит.", "ru", {})) == "<@2> sleeps."
    assert server.texts == ["Дракон спит.", "⟦0⟧ спит."]
    # The other direction is another entry.
    await bounded(translation.to_players("Dragon sleeps.", "ru", {}))
    assert server.texts[-1] == "Dragon sleeps."
    # Nothing to translate: no request.
    assert await bounded(translation.to_model("<@1> <#2> **!**", "ru", {})) == "<@1> <#2> **!**"
    assert len(server.texts) == 3


async def test_cache_evicts_the_least_recently_used(server, yandex):
    translation = Translation(yandex(), "en", cache_size=2)

    async def ask(sentence: str) -> None:
        await bounded(translation.to_model(sentence, "ru", {}))

    for sentence in ["Привет.", "Меч.", "Привет.", "Дверь."]:  # the hit makes "Меч." the oldest
        await ask(sentence)
    assert server.texts == ["Привет.", "Меч.", "Дверь."]
    await ask("Привет.")
    assert len(server.texts) == 3
    await ask("Меч.")
    assert server.texts[-1] == "Меч." and len(server.texts) == 4
    assert len(translation._cache) == 2


async def test_cache_size_zero_disables_it(server, yandex):
    translation = Translation(yandex(), "en", cache_size=0)
    for _ in range(2):
        assert await bounded(translation.to_model("Привет.", "ru", {})) == "Hello."
    assert server.texts == ["Привет.", "Привет."]


async def test_failures_are_not_cached(server, yandex):
    translation = Translation(yandex(), "en", failures_to_pause=100)
    server.mode = "empty"
    await failure(translation.to_model("Привет.", "ru", {}))
    server.mode = "ok"
    assert await bounded(translation.to_model("Привет.", "ru", {})) == "Hello."


# --- a narration while it streams -----------------------------------------------------------------

async def test_live_translation_shows_finished_sentences_only(server, yandex):
    translation = Translation(yandex(), "en")
    live = translation.live("ru", {"Брам": "Bram"})
    assert live is not None and translation.streams("ru")

    assert await bounded(live.update("The door")) == ""
    assert server.texts == []
    first = "The door opens. A dragon sleeps inside. "
    assert await bounded(live.update(first + "It w")) == ru(first)
    assert server.texts == ["The door opens.", "A dragon sleeps inside."]
    assert await bounded(live.update(first + "It wakes")) == ru(first)
    assert len(server.texts) == 2  # nothing finished since
    second = "It wakes! Bram runs.\n\n"
    assert await bounded(live.update(first + second + "*The")) == ru(first) + ru("It wakes! ") + "Брам " + ru("runs.\n\n")
    assert server.texts[2:] == ["It wakes!", "⟦0⟧ runs."]

    final = first + second + "*The end.*"
    asked = len(server.texts)
    shown = await bounded(translation.to_players(final, "ru", {"Брам": "Bram"}))
    assert shown == ru(first) + ru("It wakes! ") + "Брам " + ru("runs.\n\n") + "*" + ru("The end.") + "*"
    assert server.texts[asked:] == ["⟦0⟧The end.⟦1⟧"]  # the rest came from the cache

    # The stream restarted (a model worker restart): the translation starts over.
    assert await bounded(live.update("Another story. It")) == ru("Another story. ")
    assert await bounded(live.update("Another story. It ends. ")) == ru("Another story. It ends. ")


async def test_live_translation_keeps_what_it_has_when_the_provider_fails(server, yandex):
    translation = Translation(yandex(), "en", failures_to_pause=100)
    live = translation.live("ru", {})
    first = "The door opens. "
    assert await bounded(live.update(first + "A")) == ru(first)
    server.mode = "down"
    assert await bounded(live.update(first + "A dragon sleeps. It")) == ru(first)
    server.mode = "ok"
    asked = len(server.texts)
    assert await bounded(live.update(first + "A dragon sleeps. It wakes. Then")) == ru(first)
    assert len(server.texts) == asked  # the turn's end says why; no more tries meanwhile


async def test_live_translation_not_needed_or_not_streaming(server, yandex):
    assert Translation(yandex(), "en").live("en", {}) is None
    assert Translation(None, "en").live("ru", {}) is None
    backend = ScriptedBackend()
    llm = Translation(LLMProvider(backend.render, backend.count_tokens), "en")
    live = llm.live("ru", {})
    assert live is not None and llm.needed("ru") and not llm.streams("ru")
    assert await bounded(live.update("The door opens. A dragon sleeps. It")) == ""
    assert backend.calls == []


# --- LibreTranslate --------------------------------------------------------------------------------

async def test_libretranslate_translates_and_sends_the_key(server, http):
    keyed = Translation(LibreTranslateProvider(http, server.url + "/", 2.0, "sekret"), "en")
    assert await bounded(keyed.to_model("Привет, Брам!", "ru", {"Брам": "Bram"})) == "Hello, Bram!"
    assert server.texts == ["Привет, ⟦0⟧!"] and server.libre_keys == ["sekret"]
    open_ = Translation(LibreTranslateProvider(http, server.url, 2.0, None), "en")
    assert await bounded(open_.to_players("*The dragon sleeps.* Run!", "ru", {})) == f"*{ru('The dragon sleeps.')}* {ru('Run!')}"
    assert server.libre_keys[1:] == [None, None]
    server.mode = "mangle"
    assert await bounded(open_.to_players('"Who is there?" he asks.', "ru", {})) == f'"{ru("Who is there?")}" {ru("he asks.")}'


@pytest.mark.parametrize("mode, says", [
    ("bad_request", "400: 'xx' is not supported"),
    ("down", "500"),
    ("garbage", "not JSON"),
    ("empty", "no translation"),
    ("slow", "did not answer in time"),
])
async def test_libretranslate_failures_are_unavailable(server, http, mode, says):
    server.mode, server.delay = mode, 3.0
    translation = Translation(LibreTranslateProvider(http, server.url, 0.5, None), "en", failures_to_pause=100)
    error = await failure(translation.to_model("Привет.", "ru", {}), timeout=2.5)
    assert says in str(error) and "<" not in str(error)
    assert server.texts
    assert translation.failures == 1


async def test_libretranslate_not_running(http):
    url = f"http://127.0.0.1:{closed_port()}"
    translation = Translation(LibreTranslateProvider(http, url, 2.0, None), "en")
    error = await failure(translation.to_model("Привет.", "ru", {}))
    assert "not reachable" in str(error) and url in str(error)


# --- the text model as translator ------------------------------------------------------------------

def model_translates(text: str, settings: GenerationSettings) -> list[str]:
    """A ScriptedBackend reply: the fake translation of the prompt's last 'ru: ...' line, as one piece."""
    source = text.rsplit("\nru: ", 1)[1].rsplit("\nen:", 1)[0]
    return [" " + en(source)]


async def test_llm_translates_inside_a_job_and_refuses_outside(tmp_path):
    backend = ScriptedBackend(reply_for=model_translates)
    translation = Translation(LLMProvider(backend.render, backend.count_tokens), "en", failures_to_pause=100)
    error = await failure(translation.to_model("Привет, Брам!", "ru", {"Брам": "Bram"}))
    assert "inside a turn" in str(error)

    async def handler(job: Job, ctx) -> str:
        return await translation.to_model(job.payload["text"], "ru", {"Брам": "Bram"}, generate=ctx.generate)

    worker: ModelWorker = ModelWorker("text", lambda: backend)
    await bounded(worker.start())
    runner = Runner(handler, worker, batch_wait_ms=5)
    try:
        text = "*Привет, Брам!* Я иду.\n\nДракон спит."
        handle = runner.submit(Job(campaign_id=1, channel_id=1, payload={"text": text}))
        assert await bounded(handle.result()) == "*Hello, Bram!* I go.\n\nDragon sleeps."
        (call,) = backend.calls  # the whole text in one request: a model call is costly
        (prompt,), (settings,) = call.texts, call.settings
        assert "from the language with code 'ru' into the language with code 'en'" in prompt
        assert "⟦1⟧Привет, ⟦0⟧!⟦2⟧ Я иду.\n\nДракон спит." in prompt and "Брам" not in prompt
        masked_tokens = backend.count_tokens("⟦1⟧Привет, ⟦0⟧!⟦2⟧ Я иду.\n\nДракон спит.")
        assert settings.max_new_tokens == 2 * masked_tokens + 16 and not settings.do_sample
        # Cached like any other translation.
        again = runner.submit(Job(campaign_id=1, channel_id=1, payload={"text": text}))
        assert await bounded(again.result()) == "*Hello, Bram!* I go.\n\nDragon sleeps."
        assert len(backend.calls) == 1
    finally:
        await bounded(runner.close(1.0))
        await bounded(worker.stop())


# --- texts shown outside a turn (a page of memories) -------------------------------------------------

async def test_texts_shown_outside_a_turn_are_translated_once_then_served_by_the_cache(server, yandex):
    translation = Translation(yandex(), "en")
    texts = ["The dragon sleeps. Bram says hello.", "*Who* is there?"]
    glossary = {"Брам": "Bram"}
    assert translation.outside_turns("ru") and not translation.outside_turns("en")
    assert await bounded(translation.to_players_all(texts, "ru", glossary, cached_only=True)) is None
    assert server.texts == []  # the cache alone was asked
    shown = await bounded(translation.to_players_all(texts, "ru", glossary))
    assert shown == [f"{ru('The dragon sleeps.')} Брам {ru('says hello.')}", f"*{ru('Who')}* {ru('is there?')}"]
    assert server.texts == ["The dragon sleeps.", "⟦0⟧ says hello.", "⟦0⟧Who⟦1⟧ is there?"]  # a sentence at a time
    assert await bounded(translation.to_players_all(texts, "ru", glossary, cached_only=True)) == shown
    assert await bounded(translation.to_players_all(texts[:1], "ru", glossary)) == shown[:1]
    assert len(server.texts) == 3
    assert texts == ["The dragon sleeps. Bram says hello.", "*Who* is there?"]  # what was given is unchanged


async def test_texts_shown_outside_a_turn_fail_as_one_and_say_the_translator_is_the_cause(server, yandex):
    translation = Translation(yandex(), "en", failures_to_pause=2)
    shown = await bounded(translation.to_players_all(["Sword."], "ru", {}))
    server.mode = "down"
    error = await failure(translation.to_players_all(["Dragon sleeps.", "Door.", "Sword."], "ru", {}))
    assert translation.failures == 1 and server.texts[1:] == ["Dragon sleeps."] * 3  # the library tries 3 times
    note = translation.untranslated_note(error)
    assert note == "⚠️ Shown untranslated, as stored: the translator is unavailable (Yandex answered HTTP 500)."
    await failure(translation.to_players_all(["Door."], "ru", {}))
    asked = len(server.texts)
    paused = translation.untranslated_note(await failure(translation.to_players_all(["Door."], "ru", {})))
    assert "translator is unavailable (translation is paused after 2 failures: Yandex answered HTTP 500)" in paused
    # What the cache holds is still shown while the translator is away, and nothing is asked of it.
    assert await bounded(translation.to_players_all(["Sword."], "ru", {}, cached_only=True)) == shown
    assert await bounded(translation.to_players_all(["Sword."], "ru", {})) == shown
    assert len(server.texts) == asked


async def test_texts_shown_outside_a_turn_stay_as_stored_without_a_translator_that_works_outside_turns():
    llm = Translation(LLMProvider(str, len), "en")  # the text model translates only inside a turn
    assert llm.needed("ru") and llm.turns_only and not llm.outside_turns("ru")
    assert await bounded(llm.to_players_all(["The dragon sleeps."], "ru", {})) == ["The dragon sleeps."]
    assert await bounded(llm.to_players_all(["The dragon sleeps."], "ru", {}, cached_only=True)) == ["The dragon sleeps."]
    none = Translation(None, "en")
    assert not none.outside_turns("ru")
    assert await none.to_players_all(["Dragon."], "ru", {}) == ["Dragon."]


def test_opening_is_whole_sentences_covering_what_a_line_shows():
    text = "The dragon sleeps. " * 3 + "Bram waits by the door for a very long time."
    assert opening(text, 1000) == text
    assert opening(text, 20) == "The dragon sleeps. The dragon sleeps."  # cut where the cache cuts
    assert opening(text, 18) == "The dragon sleeps."
    assert opening("One long sentence without an end " * 5, 10) == ("One long sentence without an end " * 5).rstrip()
    assert [p.text for p in pieces(opening(text, 40))] == [p.text for p in pieces(text)][:3]


# --- no translation --------------------------------------------------------------------------------

async def test_no_provider_or_same_language_means_no_translation(server, yandex):
    none = Translation(None, "en")
    assert not none.needed("ru") and not none.streams("ru")
    assert await none.translate("Привет, *Брам*!", "ru", "en", {"Брам": "Bram"}) == "Привет, *Брам*!"
    assert await none.to_model("Привет!", "ru", {}) == "Привет!"
    assert await none.to_players("Hello!", "ru", {}) == "Hello!"
    english = Translation(yandex(), "EN")
    assert not english.needed("EN") and not english.needed("en") and english.needed("ru")
    assert await bounded(english.to_players("Hello, *Bram*!", "En", {"Bram": "Брам"})) == "Hello, *Bram*!"
    assert await bounded(english.to_model("   ", "ru", {})) == "   "
    assert server.texts == []


async def test_the_model_translates_a_text_too_long_for_one_prompt_in_pieces_that_fit(text_backend):
    """A long action in a Russian campaign asked for 2,124-4,213 tokens at once (the fuzz drill): the
    guard refused it and three such texts paused translation for every campaign."""
    backend = text_backend
    sent: list[int] = []

    async def generate(prompt, settings, stream=False):
        sent.append(backend.count_tokens(prompt) + settings.max_new_tokens)
        return f"piece{len(sent)}"

    provider = LLMProvider(backend.render, backend.count_tokens, context_tokens=512)
    text = "\n\n".join(f"Абзац {i}: " + "Дверь открывается, и ветер воет над болотом. " * 12 for i in range(6))
    translated = await provider.translate(text, "ru", "en", generate)
    assert len(sent) >= 4 and all(need <= 512 for need in sent), sent
    assert translated == " ".join(f"piece{i}" for i in range(1, len(sent) + 1))  # in order, nothing dropped
