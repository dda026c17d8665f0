"""A loopback translation server for tests: the Yandex endpoints yandexfreetranslate calls and
LibreTranslate's /translate, with switches for the ways such services fail.

"Translation" is a small dictionary, then transliteration of whatever is left (Latin <-> Cyrillic),
so every translated word is recognisably in the other script and nothing is invented. Placeholders
(⟦N⟧) and punctuation pass through, except in the "mangle" mode, which damages them the way real
translators do (spaces inside markers, straight quotes turned into «»).

Run it with sd_server.ServerThread (its own thread and loop): yandexfreetranslate is blocking code.
"""
from __future__ import annotations

import asyncio
import json
import re

from aiohttp import web

RU_EN = {
    "я": "I", "достаю": "draw", "свой": "my", "мой": "my", "меч": "sword", "и": "and", "иду": "go",
    "в": "into", "таверну": "tavern", "таверна": "tavern", "трактирщик": "innkeeper", "говорит": "says",
    "привет": "hello", "дракон": "dragon", "спит": "sleeps", "открываю": "open", "дверь": "door",
    "кто": "who", "там": "there",
}
EN_RU = {en.lower(): ru for ru, en in RU_EN.items()}
LAT = "abcdefghijklmnopqrstuvwxyz"
CYR = "абцдефгхийклмнопкрстуввхыз"
TO_CYR = str.maketrans(LAT + LAT.upper(), CYR + CYR.upper())
TO_LAT = str.maketrans({c: l for l, c in zip(LAT, CYR)} | {"ж": "zh", "ш": "sh", "щ": "sch", "ч": "ch",
                                                             "ю": "yu", "я": "ya", "ё": "yo", "ь": "",
                                                             "ъ": "", "э": "e"})


def fake_translate(text: str, source: str, target: str) -> str:
    words = RU_EN if target == "en" else EN_RU

    def word(match: re.Match) -> str:
        w = match.group(0)
        found = words.get(w.lower())
        if found is None:
            return w.translate(TO_LAT if target == "en" else TO_CYR)
        return found[:1].upper() + found[1:] if w[:1].isupper() else found

    return re.sub(r"[^\W\d_]+", word, text)


class TranslateServer:
    def __init__(self) -> None:
        self.url = ""
        self.mode = "ok"  # ok | down (500) | garbage (not JSON) | blocked (no SID on the site) | slow | mangle | empty
        self.delay = 3.0  # seconds, in "slow" mode
        self.texts: list[str] = []  # every text asked to be translated, in order
        self.site_visits = 0
        self.libre_keys: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.site)
        app.router.add_post("/api/v1/tr.json/translate", self.yandex)
        app.router.add_post("/translate", self.libre)
        return app

    def _translated(self, text: str, source: str, target: str) -> str:
        out = fake_translate(text, source, target)
        if self.mode == "mangle":
            out = re.sub(r"⟦(\d+)⟧", r"⟦ \1 ⟧", out)
            out = re.sub(r'"([^"]*)"', r"«\1»", out)
        return out

    async def _trouble(self) -> web.Response | None:
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "down":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "garbage":
            return web.Response(status=200, text="<html>captcha</html>", content_type="text/html")
        return None

    async def site(self, request: web.Request) -> web.Response:
        self.site_visits += 1
        if self.mode == "blocked":
            return web.Response(text="<html>please solve the captcha</html>", content_type="text/html")
        return web.Response(text="<script>var config = {SID: 'abc.def.ghi'};</script>", content_type="text/html")

    async def yandex(self, request: web.Request) -> web.Response:
        form = await request.post()
        text = str(form.get("text", ""))
        self.texts.append(text)
        trouble = await self._trouble()
        if trouble is not None:
            return trouble
        lang = request.query.get("lang", "")
        source, _, target = lang.rpartition("-")
        if request.query.get("srv") != "ios" or not target:
            return web.json_response({"code": 400, "message": "bad request"}, status=400)
        if self.mode == "empty":
            return web.json_response({"code": 200, "lang": lang})
        return web.json_response({"code": 200, "lang": lang, "text": [self._translated(text, source, target)]})

    async def libre(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "Invalid request"}, status=400)
        self.texts.append(body.get("q", ""))
        self.libre_keys.append(body.get("api_key"))
        trouble = await self._trouble()
        if trouble is not None:
            return trouble
        if self.mode == "empty":
            return web.json_response({})
        return web.json_response({"translatedText": self._translated(body["q"], body["source"], body["target"])})
