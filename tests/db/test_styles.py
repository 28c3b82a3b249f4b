"""The published-style catalog and per-server show/hide."""

from __future__ import annotations

from bot.db.repository import Repository, StyleInfo, StyleListing
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
