"""Point discord.py at another REST base, gateway and CDN instead of Discord's own.

Large bots send their REST traffic through a shared rate-limit proxy (twilight-http-proxy,
nirn-proxy) and sometimes their gateway through a gateway proxy, so that many processes share one
view of Discord's limits and sessions. discord.py has no setting for either: its REST base is the
class attribute `discord.http.Route.BASE`, and its gateway is `DiscordWebSocket.DEFAULT_GATEWAY`
(2.7 never connects to the URL that `GET /gateway/bot` returns unless sharded automatically). The
same override is how the tests point the real client at a Discord stand-in on 127.0.0.1.

Two details make a plain attribute swap insufficient:

* After READY, discord.py resumes at the `resume_gateway_url` that READY carried (a regional
  `wss://gateway-*.discord.gg`), which would bypass the configured gateway; so while an override
  is active, every connection (identify, resume, sharded launch) is pinned to it.
* The values are process-wide class attributes, and tests run many clients in one process; so
  every change can be undone: `reset_endpoints()` restores discord.py's defaults and
  `override_endpoints()` restores whatever was there before it.

A proxy also changes what a 429 looks like. discord.py (2.7, `HTTPClient.request` and the
webhook adapter that interaction replies use) reads a 429 *without* a `Via` header as a
Cloudflare ban: it gives up after one try instead of waiting `retry_after`. Discord's own 429s
carry `Via`; a REST proxy often drops it. `proxy_rate_limit_trace()` puts the header back on JSON
429s from the configured API base, so they are waited out and retried like Discord's (an HTML 429,
a real ban page, still fails at once).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from discord import asset, http
from discord.gateway import DiscordWebSocket
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "apply_endpoints", "current_endpoints", "override_endpoints", "proxy_rate_limit_trace", "reset_endpoints",
]

_VERSIONED_API = re.compile(r"/api/v\d+$")

# Captured at import so a reset is exact even after several overrides.
_DEFAULT_API_BASE: str = http.Route.BASE
_DEFAULT_GATEWAY: yarl.URL = DiscordWebSocket.DEFAULT_GATEWAY
_DEFAULT_CDN_BASE: str = asset.Asset.BASE
_ORIGINAL_FROM_CLIENT: Any = DiscordWebSocket.__dict__["from_client"]


@dataclass(frozen=True)
class Endpoints:
    """What discord.py currently talks to; `pinned_gateway` is None without a gateway override."""

    api_base: str
    gateway: yarl.URL
    cdn_base: str
    pinned_gateway: yarl.URL | None


_pinned_gateway: yarl.URL | None = None


async def _from_client_pinned(cls: type[DiscordWebSocket], client: Any, **kwargs: Any) -> DiscordWebSocket:
    if _pinned_gateway is not None:
        kwargs["gateway"] = _pinned_gateway
    return await _ORIGINAL_FROM_CLIENT.__func__(cls, client, **kwargs)


def _normalise_api_base(api_base: str) -> str:
    url = yarl.URL(api_base)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"discord_api_base must be an http(s) URL, got {api_base!r}")
    base = api_base.rstrip("/")
    # Proxies serve Discord's own paths, so a bare host means "the same API version discord.py uses".
    if not _VERSIONED_API.search(base):
        base += f"/api/v{http.INTERNAL_API_VERSION}"
    return base


def _normalise_gateway(gateway_url: str) -> yarl.URL:
    url = yarl.URL(gateway_url)
    if url.scheme not in ("ws", "wss") or not url.host:
        raise ValueError(f"discord_gateway_url must be a ws(s) URL, got {gateway_url!r}")
    # discord.py appends v/encoding/compress with `with_query`, which drops any query given here.
    return url.with_query(None).with_fragment(None)


def _normalise_cdn(cdn_base: str) -> str:
    url = yarl.URL(cdn_base)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"CDN base must be an http(s) URL, got {cdn_base!r}")
    return cdn_base.rstrip("/")


def _install(endpoints: Endpoints) -> None:
    global _pinned_gateway
    http.Route.BASE = endpoints.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = endpoints.gateway
    asset.Asset.BASE = endpoints.cdn_base
    _pinned_gateway = endpoints.pinned_gateway
    if endpoints.pinned_gateway is None:
        DiscordWebSocket.from_client = _ORIGINAL_FROM_CLIENT  # type: ignore[method-assign]
    else:
        DiscordWebSocket.from_client = classmethod(_from_client_pinned)  # type: ignore[assignment,method-assign]


def current_endpoints() -> Endpoints:
    """The endpoints discord.py uses right now."""
    return Endpoints(
        api_base=http.Route.BASE,
        gateway=DiscordWebSocket.DEFAULT_GATEWAY,
        cdn_base=asset.Asset.BASE,
        pinned_gateway=_pinned_gateway,
    )


def apply_endpoints(api_base: str | None, gateway_url: str | None, *, cdn_base: str | None = None) -> None:
    """Send discord.py's REST calls to `api_base` and its gateway connections to `gateway_url`.

    `None` leaves that endpoint as it is. `api_base` may be `http://proxy:8080` or
    `http://proxy:8080/api/v10`; `gateway_url` a `ws://` or `wss://` URL without query (discord.py
    adds `?v=10&encoding=json&compress=zlib-stream`). `cdn_base` (assets such as avatars; message
    attachments carry their own URLs and need no override) is for tests: production keeps Discord's CDN.
    Call it before the client logs in: asset URLs are built when objects are parsed.
    """
    now = current_endpoints()
    gateway = now.gateway if gateway_url is None else _normalise_gateway(gateway_url)
    _install(
        Endpoints(
            api_base=now.api_base if api_base is None else _normalise_api_base(api_base),
            gateway=gateway,
            cdn_base=now.cdn_base if cdn_base is None else _normalise_cdn(cdn_base),
            pinned_gateway=now.pinned_gateway if gateway_url is None else gateway,
        )
    )


def reset_endpoints() -> None:
    """Restore discord.py's own endpoints (Discord's REST API, gateway and CDN)."""
    _install(Endpoints(_DEFAULT_API_BASE, _DEFAULT_GATEWAY, _DEFAULT_CDN_BASE, None))


@contextmanager
def override_endpoints(
    api_base: str | None, gateway_url: str | None, *, cdn_base: str | None = None
) -> Iterator[Endpoints]:
    """`apply_endpoints` for the duration of a block, then put back exactly what was there before."""
    before = current_endpoints()
    apply_endpoints(api_base, gateway_url, cdn_base=cdn_base)
    try:
        yield current_endpoints()
    finally:
        _install(before)


def proxy_rate_limit_trace(api_base: str) -> aiohttp.TraceConfig:
    """An aiohttp trace (discord.py's `http_trace` option) that marks JSON 429s from `api_base` with
    the `Via` header discord.py expects, so a proxy's rate limit is retried, not taken for a ban."""
    origin = yarl.URL(_normalise_api_base(api_base)).origin()

    async def on_request_end(
        session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        response = params.response
        if (
            response.status == 429
            and "Via" not in response.headers
            and response.content_type == "application/json"
            and params.url.origin() == origin
        ):
            headers = CIMultiDict(response.headers)
            headers["Via"] = "1.1 mmpp (a REST proxy dropped it)"
            marked = CIMultiDictProxy(headers)
            # aiohttp keeps headers read-only (and `headers` is cached once read); discord.py reads
            # them only after this hook runs. `test_faults` guards this against aiohttp changes.
            response._headers = marked
            cache = getattr(response, "_cache", None)
            if isinstance(cache, dict):
                cache["headers"] = marked

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
