"""Translation providers: each turns one short text from one language into another, or raises
Unavailable. Caching, the circuit breaker, markup and glossary live in engine/translation/translate.py.

- yandex: the free Yandex endpoint through yandexfreetranslate (blocking urllib, so a worker thread)
  with api="ios", as in the seed; it breaks without warning, which translate.py is built for.
- libretranslate: a self-hosted LibreTranslate server's HTTP API, for owners who want no scraping.
- llm: the text model itself, for multilingual models; it runs inside the job that needs it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import aiohttp

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.translation.markup import CLOSE, OPEN
from engine.text import chunk_text
from engine.textgen.base import Prompt

log = logging.getLogger(__name__)
# The text model, through the runner's batcher: only a job has it (JobContext.generate).
Generate = Callable[..., Awaitable[str]]


class Provider(Protocol):
    name: str
    streams: bool  # fast enough to translate a narration sentence by sentence while it is written

    async def translate(self, text: str, source: str, target: str, generate: Generate | None) -> str: ...


def language_problem(provider: Provider, code: str) -> str | None:
    """Why a provider cannot take a language code, or None (providers without a check take any)."""
    check = getattr(provider, "language_problem", None)
    return check(code) if check else None


class YandexProvider:
    """Yandex's free translator (yandexfreetranslate), its blocking calls in a thread."""
    name, streams = "yandex", True
    LIMIT = 500  # characters per request; the library itself cuts longer texts and joins them with "\n"

    def __init__(self, timeout_s: float, key_file: str, *, site_url: str = "", api_url: str = "") -> None:
        from yandexfreetranslate import YandexFreeTranslate

        timeout = timeout_s

        class Client(YandexFreeTranslate):
            def _create_opener(self):  # the library opens URLs without a timeout
                opener = super()._create_opener()
                plain = opener.open
                opener.open = lambda request, data=None: plain(request, data, timeout=timeout)
                return opener

        # Its key file goes beside our data, not into the home folder; endpoints are class
        # attributes, overridden per instance (tests point them at a loopback server).
        Client.keyfilename = str(Path(key_file))
        Client.backfilename = Client.keyfilename + ".back"
        self._client = Client(api="ios")
        if site_url:
            self._client.siteurl = site_url
        if api_url:
            self._client.apibaseurl = api_url
        self._timeout = timeout_s
        self._lock = threading.Lock()  # the client keeps its key and error count on itself

    def _blocking(self, text: str, source: str, target: str) -> str:
        with self._lock:
            return self._client.translate(source, target, text)

    @staticmethod
    def language_problem(code: str) -> str | None:  # asked by Translation before every request
        return None if len(code) == 2 else f"Yandex takes two-letter language codes such as ru, not {code!r}"

    async def translate(self, text: str, source: str, target: str, generate: Generate | None = None) -> str:
        if len(text) > self.LIMIT:  # one long sentence: cut at spaces, each part its own request
            out = []
            for part in _cut(text, self.LIMIT):
                words = part.rstrip()
                out.append((await self.translate(words, source, target) if words.strip() else words)
                           + part[len(words):])
            return "".join(out)
        try:
            # The library retries twice itself; three tries plus a margin bound the whole wait.
            return await asyncio.wait_for(asyncio.to_thread(self._blocking, text, source, target),
                                          timeout=self._timeout * 3 + 1)
        except asyncio.TimeoutError:
            raise Unavailable("Yandex did not answer in time") from None
        except Exception as exc:  # urllib, JSON, the library's own error: all mean "not now"
            log.info("yandex translation failed: %r", exc)
            raise Unavailable(_yandex_trouble(exc)) from None


def _cut(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters that join back into the text, cut after a space or a line
    end where there is one (placeholders hold no spaces, so none is cut in two)."""
    parts = []
    while len(text) > limit:
        at = max(text.rfind(" ", 1, limit), text.rfind("\n", 1, limit)) + 1 or limit
        parts.append(text[:at])
        text = text[at:]
    return parts + [text]


def _yandex_trouble(exc: Exception) -> str:
    """What went wrong, in words for players (no exception names)."""
    import json
    import socket
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"Yandex answered HTTP {exc.code}"
    if isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc):
        return "Yandex did not answer in time"
    if isinstance(exc, urllib.error.URLError):
        return "Yandex is not reachable"
    if isinstance(exc, json.JSONDecodeError):
        return "Yandex answered something that is not a translation"
    return "Yandex refused (blocked, or its free endpoint changed)"


class LibreTranslateProvider:
    name, streams = "libretranslate", True

    def __init__(self, http: aiohttp.ClientSession, url: str, timeout_s: float, api_key: str | None) -> None:
        self.http, self.url, self.timeout, self.api_key = http, url.rstrip("/"), timeout_s, api_key

    async def translate(self, text: str, source: str, target: str, generate: Generate | None = None) -> str:
        body: dict[str, Any] = {"q": text, "source": source, "target": target, "format": "text"}
        if self.api_key:
            body["api_key"] = self.api_key
        try:
            async with self.http.post(self.url + "/translate", json=body,
                                      timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                try:
                    reply = await response.json(content_type=None)
                except ValueError:  # an error page (a proxy's, a crash's) is not JSON either
                    if response.status == 200:
                        raise
                    reply = None
                if response.status != 200:
                    error = reply.get("error") if isinstance(reply, dict) else None
                    raise Unavailable(f"LibreTranslate answered {response.status}: {error or response.reason}")
        except asyncio.TimeoutError:
            raise Unavailable("LibreTranslate did not answer in time") from None
        except aiohttp.ClientConnectionError:
            raise Unavailable(f"LibreTranslate at {self.url} is not reachable") from None
        except (aiohttp.ContentTypeError, ValueError):
            raise Unavailable("LibreTranslate answered something that is not JSON") from None
        translated = reply.get("translatedText") if isinstance(reply, dict) else None
        if not isinstance(translated, str):
            raise Unavailable("LibreTranslate sent no translation")
        return translated


class LLMProvider:
    """The narrator's own model translates: no service needed, good with multilingual models."""

    name, streams = "llm", False  # the model is busy narrating while the narration streams
    turns_only = True  # it generates through a job's context

    def __init__(self, render: Callable[[Prompt], str], count_tokens: Callable[[str], int],
                 context_tokens: int = 2048) -> None:
        self.render, self.count_tokens, self.context_tokens = render, count_tokens, context_tokens

    async def translate(self, text: str, source: str, target: str, generate: Generate | None = None) -> str:
        if generate is None:
            raise Unavailable("the llm translator works only inside a turn")
        rule = (f"Translate from the language with code '{source}' into the language with code '{target}'. "
                f"Answer with the translation only. Copy every marker like {OPEN}0{CLOSE} unchanged, in place.")
        prompt = self.render(Prompt(rule, text, f"{rule}\n\n{source}: {text}\n{target}:"))
        wanted = min(1024, 2 * self.count_tokens(text) + 16)
        if self.count_tokens(prompt) + wanted > self.context_tokens:  # too long for one prompt: in pieces
            pieces = chunk_text(text, max(1, len(text) // 2 + 1))  # cut at sentence ends, words kept whole
            if len(pieces) < 2:
                raise Unavailable("this text is too long for the model to translate")
            return " ".join([await self.translate(piece, source, target, generate) for piece in pieces])
        settings = GenerationSettings(max_new_tokens=wanted, do_sample=False, num_beams=1,
                                      repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0)
        translated = (await generate(prompt, settings, stream=False)).strip()
        if not translated:
            raise Unavailable("the model gave no translation")
        return translated

