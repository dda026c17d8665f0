"""A model behind any OpenAI-compatible server: Ollama, llama.cpp's server, KoboldCpp, LM Studio,
vLLM, TGI. The server batches and schedules; this backend streams one request per turn over aiohttp,
up to `max_concurrency` at once, and the runner sends different channels' jobs concurrently.

The chat API (`/chat/completions`, the server applies the model's template) is the default; the
completions API (`/completions`) takes the plain-text prompt, for base models. Failures before the
first token (connection refused, 429, 5xx) are retried with backoff; a stream that breaks after it
began, a server that answers garbage or is too slow, ends the call with a short, plain `Unavailable`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt, TextBackend
from engine.textgen.control_tokens import ROLE_MARKERS, neutralise

log = logging.getLogger(__name__)

# The server applies a template we cannot see: take out every common control token and role marker,
# and anything shaped like one ("<|...|>"), so player text cannot open a turn of its own.
COMMON_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|system|>", "<|user|>",
                  "<|assistant|>", "<|end|>", "<s>", "</s>", *ROLE_MARKERS)
_TOKEN_SHAPED = re.compile(r"<\|[^<>|\s]{1,40}\|>")
BYTES_PER_TOKEN = 3  # no tokenizer here: English runs ~4 bytes a token, Russian ~3; count on the safe side
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ServerSettings:
    base_url: str  # e.g. http://127.0.0.1:11434/v1
    model: str
    api_key: str | None = None
    api: str = "chat"  # "chat" or "completions"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0  # longest silence between two pieces of a reply (or before the first)
    retries: int = 3
    backoff_s: float = 1.0  # doubles after each retry; a Retry-After header wins
    max_concurrency: int = 4
    sampling_extras: bool = True  # send top_k, repetition_penalty, min_tokens (vLLM, llama.cpp, Ollama take them)


def strip_markers(text: str) -> str:
    while True:
        cleaned = _TOKEN_SHAPED.sub("", neutralise(text, COMMON_MARKERS))
        if cleaned == text:
            return text
        text = cleaned


def request_body(settings: ServerSettings, text: str, generation: GenerationSettings) -> dict[str, Any]:
    """The JSON a server gets: the prompt in the API's shape and every setting it can take."""
    body: dict[str, Any] = {"model": settings.model, "stream": True, "max_tokens": generation.max_new_tokens,
                            "top_p": generation.top_p,
                            "temperature": generation.temperature if generation.do_sample else 0.0}
    if settings.api == "chat":
        body["messages"] = json.loads(text)
    else:
        body["prompt"] = text
    if settings.sampling_extras:
        body["repetition_penalty"] = generation.repetition_penalty
        if generation.top_k:
            body["top_k"] = generation.top_k
        if generation.min_new_tokens:
            body["min_tokens"] = generation.min_new_tokens
    return body


def piece_of(event: Any, api: str) -> str:
    """The text of one streamed event; anything not shaped like an OpenAI chunk is garbage."""
    try:
        choice = event["choices"][0] if event.get("choices") else None
        if choice is None:  # usage-only chunks (stream_options) carry no text
            return ""
        piece = choice.get("delta", {}).get("content") if api == "chat" else choice.get("text")
    except (AttributeError, KeyError, IndexError, TypeError):
        raise Unavailable("the model server's answer is not an OpenAI-compatible stream") from None
    if piece is not None and not isinstance(piece, str):
        raise Unavailable("the model server's answer is not an OpenAI-compatible stream")
    return piece or ""


class OpenAIBackend(TextBackend):
    """Any OpenAI-compatible server (chat or completions API), streamed over aiohttp, with retries and a concurrency limit."""
    can_batch = False
    concurrent = True  # the runner streams several requests at once instead of batching them itself

    def __init__(self, settings: ServerSettings) -> None:
        if settings.api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', not {settings.api!r}")
        self.settings = settings
        self.name = f"{settings.model} at {settings.base_url}"
        self.is_chat = settings.api == "chat"
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- the prompt ---
    def render(self, prompt: Prompt) -> str:
        """Chat: the messages as JSON (the server applies the template); completions: the plain text."""
        if not self.is_chat:
            return strip_markers(prompt.continuation)
        return json.dumps([{"role": "system", "content": strip_markers(prompt.system)},
                           {"role": "user", "content": strip_markers(prompt.user)}], ensure_ascii=False)

    def extend(self, rendered: str, written: str) -> str:
        """Chat: the reply so far as the assistant's message and a request to go on (a chat server starts a
        new message; there is no standard way to continue one); completions: the text itself goes on."""
        if not self.is_chat:
            return rendered + written
        return json.dumps([*json.loads(rendered), {"role": "assistant", "content": written},
                           {"role": "user", "content": "Go on from exactly where you stopped, without repeating it."}],
                          ensure_ascii=False)

    def count_tokens(self, text: str) -> int:
        if self.is_chat and text.startswith("["):
            try:
                text = "\n".join(m["content"] for m in json.loads(text)) + "\n" * 8  # the template's few tokens
            except (ValueError, KeyError, TypeError):
                pass
        return -(-len(text.encode()) // BYTES_PER_TOKEN)

    # --- the calls ---
    def generate_batch(self, requests, on_token, should_stop):
        raise Unavailable("the openai backend streams on the event loop; the runner calls stream()")

    async def stream(self, request: GenRequest, on_piece: Callable[[str], None],
                     should_stop: Callable[[], bool]) -> str:
        """One reply, piece by piece to on_piece; stops (closing the stream) as soon as should_stop()."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        async with self._slots:
            return await self._with_retries(request, on_piece, should_stop)

    async def _with_retries(self, request, on_piece, should_stop) -> str:
        s = self.settings
        delay = s.backoff_s
        for attempt in range(s.retries + 1):
            started: list[bool] = [False]
            try:
                return await self._one_call(request, on_piece, should_stop, started)
            except _Retryable as exc:
                if started[0] or attempt == s.retries:
                    raise Unavailable(exc.message) from None
                wait = exc.retry_after if exc.retry_after is not None else delay
                log.warning("model server: %s; retrying in %.1f s", exc.message, wait)
                await asyncio.sleep(min(wait, 60.0))
                delay *= 2
        raise AssertionError("unreachable")

    async def _one_call(self, request, on_piece, should_stop, started: list[bool]) -> str:
        s = self.settings
        url = s.base_url.rstrip("/") + ("/chat/completions" if self.is_chat else "/completions")
        headers = {"Accept": "text/event-stream"}
        if s.api_key:
            headers["Authorization"] = f"Bearer {s.api_key}"
        body = request_body(s, request.text, request.settings)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s)
        pieces: list[str] = []
        try:
            async with self._http().post(url, json=body, headers=headers, timeout=timeout) as response:
                if response.status in RETRY_STATUS:
                    raise _Retryable(f"the model server answered {response.status}", _retry_after(response))
                if response.status in (401, 403):
                    raise Unavailable("the model server refused our key (llm.api_key_env)")
                if response.status != 200:
                    raise Unavailable(f"the model server answered {response.status} ({await _short_text(response)})")
                finished = False
                async for event in _events(response):
                    if event is None:  # [DONE]
                        finished = True
                        break
                    piece = piece_of(event, s.api)
                    if piece:
                        started[0] = True
                        pieces.append(piece)
                        on_piece(piece)
                    if should_stop():
                        return "".join(pieces)  # leaving the block closes the connection: the server stops
                    finished = finished or _finish_reason(event) is not None
                if not finished:  # the connection closed cleanly, but the reply never said it was done
                    raise aiohttp.ClientPayloadError("the stream ended before the reply did")
        except asyncio.TimeoutError:
            raise (Unavailable if started[0] else _Retryable)("the model server is too slow to answer") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if started[0]:
                raise Unavailable("the model server dropped the reply midway") from None
            raise _Retryable(f"cannot reach the model server ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(f"the model server failed ({type(exc).__name__})") from None
        return "".join(pieces)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No kept-alive connections (as for the picture server): an idle pool's cleanup timers keep
            # the process from ever being idle, and a turn's handshake is nothing beside its generation.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


async def _short_text(response: aiohttp.ClientResponse) -> str:
    text = (await response.text(errors="replace"))[:200]
    return " ".join(text.split()) or "no details"


async def _events(response: aiohttp.ClientResponse):
    """Server-sent events' JSON payloads; None for [DONE]. A line that is not an event is garbage."""
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith(":"):  # keep-alive comments
            continue
        if line.startswith(("event:", "id:", "retry:")):
            continue
        if not line.startswith("data:"):
            raise Unavailable("the model server's answer is not an OpenAI-compatible stream")
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise Unavailable("the model server's answer is not an OpenAI-compatible stream") from None
        if isinstance(event, dict) and "error" in event:
            message = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
            raise Unavailable(f"the model server reported an error: {str(message)[:200]}")
        yield event


def _finish_reason(event: dict) -> str | None:
    choices = event.get("choices") or [{}]
    return choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
