"""A real HTTP server on loopback speaking the OpenAI API as Ollama, llama.cpp's server and vLLM do:
`/v1/chat/completions` and `/v1/completions`, streamed as server-sent events, with a switch for every
failure the bot must survive. Run it with sd_server.ServerThread (its own thread and event loop).

The reply is `words` (by default the last word of the prompt, then "one two three ..."), one word
per event, `delay` seconds apart.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class OpenAIServer:
    words: list[str] = field(default_factory=lambda: "The lantern flickers as the door creaks open.".split())
    delay: float = 0.0
    key: str = ""  # "" takes any request; otherwise "Authorization: Bearer <key>" is required
    fail_first: list[int] = field(default_factory=list)  # statuses answered to the first requests, in order
    retry_after: str = ""  # sent with those failures
    mode: str = "ok"  # ok | drop (the connection is cut after `drop_after` words) | garbage | error_event
                      # | slow (headers, then silence) | no_done (the stream ends without [DONE])
    drop_after: int = 2
    requests: list[dict] = field(default_factory=list)  # every body received
    headers: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    disconnected: int = 0  # replies the client stopped reading before they ended
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._reply(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._reply(request, "completions")

    async def _reply(self, request: web.Request, api: str) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.key and request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": {"message": "Invalid API key"}}, status=401)
        if self.fail_first:
            status = self.fail_first.pop(0)
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"error": {"message": f"failure {status}"}}, status=status, headers=headers)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await response.prepare(request)
            if self.mode == "garbage":
                await response.write(b"<html>502 Bad Gateway</html>\n")
                return response
            if self.mode == "slow":
                await asyncio.sleep(3600)
            words = self.words[: body.get("max_tokens", len(self.words))]
            for i, word in enumerate(words):
                if self.mode == "drop" and i == self.drop_after:
                    request.transport.close()  # type: ignore[union-attr]  # cut, as a crashed server would
                    return response
                if self.mode == "error_event" and i == 1:
                    await self._event(response, {"error": {"message": "CUDA out of memory"}})
                    return response
                piece = word if i == 0 else " " + word
                chunk = ({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} if api == "chat"
                         else {"choices": [{"index": 0, "text": piece, "finish_reason": None}]})
                await self._event(response, chunk)
                await asyncio.sleep(self.delay)
            if self.mode != "no_done":
                last = {"index": 0, "delta": {}, "finish_reason": "length"} if api == "chat" else \
                    {"index": 0, "text": "", "finish_reason": "length"}
                await self._event(response, {"choices": [last]})
                await response.write(b"data: [DONE]\n\n")
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected += 1
            raise
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _event(response: web.StreamResponse, payload: dict) -> None:
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())
