"""Fault injection for the stand-in: Discord having a bad day, and a CDN that lies.

* `Fault`: chosen REST routes answer 5xx, 429 (with or without the `Via` header Discord sends),
  or any Discord error, a number of times or for good; or the request takes effect and its answer
  is lost (`applied`), as when Discord did the edit and then failed to say so.
* `StreamedAsset`: a CDN file generated on the fly (so the stand-in never holds 200 MB) and
  served slowly if asked; it counts the bytes it managed to send.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .payloads import dumps

JSON = dict[str, Any]


@dataclass
class Fault:
    """Requests matching `method` and `path` (a regex searched in the path) answer `status`.

    `times=None` fails every matching request; otherwise only the next `times` of them. A 429 says
    `retry_after` seconds and carries `Via` only when `via` (Discord's own 429s always do; a REST
    proxy may drop it). `code` picks a Discord error code for 4xx answers (e.g. 10015 Unknown
    Webhook, what an expired interaction token gets).

    With `applied` the request is carried out first and only its answer is replaced: Discord did
    the work and the bot hears a failure. `status=0` then drops the connection with no answer at
    all (a reset or a timeout on the way back)."""

    method: str
    path: str
    status: int
    times: int | None = None
    retry_after: float = 0.2
    via: bool = True
    code: int = 0
    applied: bool = False
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    @property
    def active(self) -> bool:
        return self.times is None or self.hits < self.times

    def matches(self, request: web.Request) -> bool:
        return self.active and request.method == self.method and bool(self._pattern.search(request.path))

    def response(self) -> web.Response:
        self.hits += 1
        headers = {"Content-Type": "application/json"}
        body: JSON
        if self.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": False}
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
            if self.via:
                headers["Via"] = "1.1 google"
        elif self.status >= 500:
            body = {"message": "Internal Server Error", "code": 0}
        else:
            body = {"message": "Unknown Webhook" if self.code == 10015 else "Error", "code": self.code}
        return web.Response(status=self.status, body=dumps(body).encode(), headers=headers)


@dataclass
class StreamedAsset:
    """`size` bytes of `prefix` then filler, sent in `chunk`-byte pieces `delay_s` apart."""

    prefix: bytes
    size: int
    content_type: str = "image/jpeg"
    chunk: int = 64 * 1024
    delay_s: float = 0.0
    # With False the response has no Content-Length (chunked), so only the bytes tell the size.
    declare_length: bool = False
    sent: int = 0
    # When the first byte went out and when the last did (or the client stopped reading), on the
    # loop's clock: tests read how many downloads overlapped.
    started_at: float | None = None
    ended_at: float | None = None

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.started_at = asyncio.get_running_loop().time()
        try:
            return await self._serve(request)
        finally:
            self.ended_at = asyncio.get_running_loop().time()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": self.content_type})
        if self.declare_length:
            response.content_length = self.size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        filler = b"\0" * self.chunk
        try:
            while self.sent < self.size:
                piece = self.prefix[self.sent : self.sent + self.chunk] if self.sent < len(self.prefix) else filler
                piece = piece[: self.size - self.sent]
                await response.write(piece)
                self.sent += len(piece)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            # The client stopped reading (the bot's byte cap or its timeout): what was sent is counted.
            pass
        return response
