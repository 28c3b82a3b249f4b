"""`mmpp.bot.app.discord_endpoints`: where discord.py sends REST calls, opens its gateway and fetches assets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yarl
from discord import asset, http
from discord.gateway import DiscordWebSocket

from mmpp.bot.app.discord_endpoints import apply_endpoints, current_endpoints, override_endpoints, reset_endpoints


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    reset_endpoints()
    yield
    reset_endpoints()


def test_defaults_are_discords_own() -> None:
    now = current_endpoints()
    assert now.api_base == "https://discord.com/api/v10"
    assert now.gateway == yarl.URL("wss://gateway.discord.gg/")
    assert now.cdn_base == "https://cdn.discordapp.com"
    assert now.pinned_gateway is None
    assert "from_client" in DiscordWebSocket.__dict__


def test_apply_sets_route_base_gateway_and_cdn() -> None:
    apply_endpoints("http://proxy:8080/api/v10/", "ws://gw.internal:7878/", cdn_base="http://cdn.internal/")
    assert http.Route.BASE == "http://proxy:8080/api/v10"
    assert http.Route("GET", "/users/@me").url == "http://proxy:8080/api/v10/users/@me"
    assert DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("ws://gw.internal:7878/")
    assert asset.Asset.BASE == "http://cdn.internal"
    assert current_endpoints().pinned_gateway == yarl.URL("ws://gw.internal:7878/")


def test_bare_proxy_host_gets_the_api_version_path() -> None:
    apply_endpoints("http://nirn:8080", None)
    assert http.Route.BASE == "http://nirn:8080/api/v10"
    # The gateway was not named, so it stays Discord's and nothing is pinned.
    assert DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("wss://gateway.discord.gg/")
    assert current_endpoints().pinned_gateway is None


def test_gateway_query_is_dropped_because_discord_py_sets_its_own() -> None:
    apply_endpoints(None, "wss://gw.example/?v=9&encoding=etf")
    assert DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("wss://gw.example/")


@pytest.mark.parametrize(
    ("api_base", "gateway_url"),
    [("ftp://x", None), ("not a url", None), (None, "http://gw.example/"), (None, "gateway.discord.gg")],
)
def test_bad_urls_are_refused(api_base: str | None, gateway_url: str | None) -> None:
    with pytest.raises(ValueError):
        apply_endpoints(api_base, gateway_url)
    assert current_endpoints().api_base == "https://discord.com/api/v10"


def test_override_restores_what_was_there_before() -> None:
    apply_endpoints("http://outer:1", "ws://outer:2/")
    outer = current_endpoints()
    with override_endpoints("http://inner:1", "ws://inner:2/", cdn_base="http://inner:3") as inner:
        assert inner.api_base == "http://inner:1/api/v10"
        assert current_endpoints().pinned_gateway == yarl.URL("ws://inner:2/")
    assert current_endpoints() == outer


def test_reset_restores_the_original_from_client() -> None:
    original = DiscordWebSocket.__dict__["from_client"]
    apply_endpoints(None, "ws://gw.internal/")
    assert DiscordWebSocket.__dict__["from_client"] is not original
    reset_endpoints()
    assert DiscordWebSocket.__dict__["from_client"] is original


async def test_pinned_gateway_replaces_the_resume_url() -> None:
    seen: list[yarl.URL | None] = []

    class Stop(Exception):
        pass

    class FakeHttp:
        token = "t"

        async def ws_connect(self, url: str) -> None:
            seen.append(yarl.URL(url))
            raise Stop

    class FakeClient:
        http = FakeHttp()

    apply_endpoints(None, "ws://gw.internal:7878/")
    with pytest.raises(Stop):
        await DiscordWebSocket.from_client(
            FakeClient(),  # type: ignore[arg-type]
            gateway=yarl.URL("wss://gateway-us-east1-b.discord.gg"),
            resume=True,
        )
    assert seen == [yarl.URL("ws://gw.internal:7878/?v=10&encoding=json&compress=zlib-stream")]
