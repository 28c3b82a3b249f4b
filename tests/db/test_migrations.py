"""The schema: created from nothing, removed and recreated, identical to the models."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mmpp.bot.db.database import Database, open_database
from mmpp.bot.db.errors import MigrationError
from mmpp.bot.db.migrate import head_revision
from mmpp.bot.db.models import Base
from mmpp.bot.db.repository import Repository
from tests.db.conftest import STYLES

TABLES = {
    "styles", "server_style_settings", "server_presets", "channel_overrides", "generation_log", "server_safety",
}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def _table_names(db: Database) -> set[str]:
    async with db.connect() as connection:
        return await connection.run_sync(_tables)


async def test_upgrade_from_empty_to_head(database_url: str) -> None:
    async with Database(database_url) as db:
        assert await db.current_revision() is None
        assert await _table_names(db) == set()

        before, after = await db.upgrade("head")

        assert (before, after) == (None, head_revision())
        assert await db.current_revision() == head_revision()
        assert await _table_names(db) == TABLES


async def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    assert await database.upgrade("head") == (head_revision(), head_revision())


async def test_downgrade_to_base_and_up_again(database: Database) -> None:
    repo = Repository(database.sessions, default_style="simpsons")
    await repo.sync_styles(STYLES)

    assert await database.downgrade("base") == (head_revision(), None)
    assert await database.current_revision() is None
    assert await _table_names(database) == set()

    await database.upgrade_to_head()
    assert await _table_names(database) == TABLES
    # A fresh schema: the styles written before the downgrade went with it, and it works again.
    assert await repo.list_styles() == []
    await repo.sync_styles(STYLES)
    assert len(await repo.list_styles()) == len(STYLES)


async def test_models_match_migrations(database: Database) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


async def test_first_start_creates_file_folder_and_schema(tmp_path) -> None:
    path = tmp_path / "data" / "nested" / "mmpp.sqlite3"
    db = await open_database(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.is_file()
        assert await db.current_revision() == head_revision()
    finally:
        await db.dispose()


async def test_two_processes_starting_together_both_end_at_head(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        results = await asyncio.gather(first.upgrade_to_head(), second.upgrade_to_head())
        assert results == [head_revision(), head_revision()]
        assert await _table_names(first) == TABLES
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_schema_from_a_newer_mmpp_is_refused_clearly(database: Database) -> None:
    async with database.connect() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        await connection.commit()

    with pytest.raises(MigrationError, match=r"'9999'.*newer MMPP"):
        await database.upgrade_to_head()


async def test_presets_stored_before_the_guard_existed_get_it_on(database_url: str) -> None:
    async with Database(database_url) as db:
        await db.upgrade("0003")
        async with db.connect() as connection:
            await connection.execute(text(
                "INSERT INTO styles (name, description, enabled, first_seen_at, updated_at) "
                "VALUES ('anime', '', true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ))
            await connection.execute(text(
                "INSERT INTO server_presets (guild_id, style, seed_policy, allow_member_choice, set_by, set_at) "
                "VALUES (1, 'anime', 'random', false, 2, '2026-01-01 00:00:00')"
            ))
            await connection.commit()
        await db.upgrade("head")
        preset = await Repository(db.sessions, default_style="anime").get_server_preset(1)
        assert preset is not None and preset.style == "anime" and preset.unlinkable


async def test_a_job_open_across_the_language_upgrade_keeps_no_language(database_url: str) -> None:
    """A job a crash left open before 0006 is still found after the upgrade, without a language
    (its notice is then English); a job opened after it keeps the member's."""
    async with Database(database_url) as db:
        await db.upgrade("0005")
        async with db.connect() as connection:
            await connection.execute(text(
                "INSERT INTO generation_log (user_id, guild_id, channel_id, style, queued_at, kind) "
                "VALUES (7, 1, 2, 'anime', '2026-01-01 00:00:00', 'portrait')"
            ))
            await connection.commit()
        await db.upgrade("head")
        repo = Repository(db.sessions, default_style="anime")
        await repo.reserve(8, 1, 2, "anime", language="ko")
        assert [(j.user_id, j.language) for j in await repo.open_jobs()] == [(7, None), (8, "ko")]
