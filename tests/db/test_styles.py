"""The published-style catalog and per-server show/hide."""

from __future__ import annotations

from mmpp.bot.db.repository import Repository
from mmpp.bot.db.styles import StyleInfo, StyleListing
from tests.db.conftest import STYLES

GUILD = 5_000_000_000_000_000_001
ADMIN = 42


async def test_catalog_sync_adds_updates_and_withdraws(repo: Repository) -> None:
    assert [s.name for s in await repo.list_styles()] == ["anime", "noir", "pixar", "simpsons"]

    await repo.sync_styles([StyleInfo("anime", "Now with speed lines."), StyleInfo("clay", "Stop motion.")])

    assert await repo.list_styles() == [
        StyleListing("anime", "Now with speed lines.", True),
        StyleListing("clay", "Stop motion.", True),
    ]
    # Withdrawn styles come back with their server settings intact when the catalog ships them again.
    await repo.sync_styles(STYLES)
    assert {s.name for s in await repo.list_styles()} == {"anime", "noir", "pixar", "simpsons"}


async def test_a_server_hides_styles_for_itself_only(repo: Repository) -> None:
    await repo.set_style_enabled(GUILD, "noir", False, ADMIN)

    here = {s.name: s.enabled for s in await repo.list_styles(GUILD)}
    assert here == {"anime": True, "noir": False, "pixar": True, "simpsons": True}
    assert all(s.enabled for s in await repo.list_styles(GUILD + 1))
    assert all(s.enabled for s in await repo.list_styles(None))

    await repo.set_style_enabled(GUILD, "noir", True, ADMIN)
    assert all(s.enabled for s in await repo.list_styles(GUILD))


async def test_sync_accepts_catalog_objects_with_name_and_description(repo: Repository) -> None:
    class CatalogStyle:
        def __init__(self, name: str) -> None:
            self.name = name
            self.description = f"The {name} look."

    await repo.sync_styles([CatalogStyle("ink"), CatalogStyle("ink")])
    assert await repo.list_styles() == [StyleListing("ink", "The ink look.", True)]


async def test_a_renamed_built_in_keeps_presets_overrides_and_choices(repo: Repository) -> None:
    """`simpsons` became `sunny-cartoon`: rooms that chose it keep their look after the next start."""
    other = GUILD + 1
    await repo.set_server_preset(GUILD, "simpsons", background="teal", set_by=ADMIN)
    await repo.set_channel_override(GUILD, 77, "simpsons", framing="close-up", set_by=ADMIN)
    await repo.set_style_enabled(other, "simpsons", False, ADMIN)  # hidden there: stays hidden
    renamed = [StyleInfo("sunny-cartoon", "Sunny."), *(s for s in STYLES if s.name != "simpsons")]

    await repo.sync_styles(renamed, renamed={"simpsons": "sunny-cartoon"})

    server = await repo.resolve(GUILD, 1)
    assert (server.style, server.background, server.source) == ("sunny-cartoon", "teal", "server")
    channel = await repo.resolve(GUILD, 77)
    assert (channel.style, channel.framing, channel.source) == ("sunny-cartoon", "close-up", "channel")
    assert {s.name: s.enabled for s in await repo.list_styles(other)}["sunny-cartoon"] is False
    assert "simpsons" not in {s.name for s in await repo.list_styles()}
    # A second start finds nothing left to move and changes nothing.
    await repo.sync_styles(renamed, renamed={"simpsons": "sunny-cartoon"})
    assert (await repo.resolve(GUILD, 1)).style == "sunny-cartoon"


async def test_without_the_rename_an_old_name_is_left_alone(repo: Repository) -> None:
    """An operator whose STYLES_DIR has its own `simpsons` passes no rename: presets keep naming it."""
    await repo.set_server_preset(GUILD, "simpsons", set_by=ADMIN)
    await repo.sync_styles([*STYLES, StyleInfo("sunny-cartoon", "Sunny.")], renamed={})
    assert (await repo.resolve(GUILD, 1)).style == "simpsons"
