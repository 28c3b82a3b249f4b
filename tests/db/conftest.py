"""Fixtures: every database test runs against a SQLite file and a throwaway PostgreSQL database.

PostgreSQL comes from MMPP_TEST_POSTGRES_URL (a server where we may CREATE DATABASE). When it is
unreachable the PostgreSQL half is skipped, unless MMPP_REQUIRE_POSTGRES=1 (CI), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mmpp.bot.db.database import Database
from mmpp.bot.db.repository import Repository
from mmpp.bot.db.styles import StyleInfo
from tests.need import need

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get("MMPP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")

STYLES = (
    StyleInfo("simpsons", "Yellow skin, overbite, Springfield."),
    StyleInfo("pixar", "Soft 3D animated film look."),
    StyleInfo("anime", "Clean cel shading."),
    StyleInfo("noir", "Black and white ink."),
)
DEFAULT_STYLE = "simpsons"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run setup/teardown work on its own loop, leaving pytest-asyncio's loops alone."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _postgres_admin(sql: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5})
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        run(_postgres_admin("SELECT 1"))
    except Exception as exc:
        where = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)
        need(f"PostgreSQL at {where} is unreachable: {exc}", "MMPP_REQUIRE_POSTGRES")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'mmpp.sqlite3'}"


@pytest.fixture
def postgresql_url(postgres_admin_url: str) -> Iterator[str]:
    name = f"mmpp_test_{uuid.uuid4().hex[:12]}"
    run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database (no schema) on each backend."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest_asyncio.fixture(loop_scope="function")
async def database(database_url: str) -> AsyncIterator[Database]:
    """A database migrated to head."""
    db = Database(database_url)
    await db.upgrade_to_head()
    try:
        yield db
    finally:
        await db.dispose()


@dataclass
class Clock:
    """A settable time source, so "tomorrow" and "100 days ago" need no sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2025, 6, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_repository(database: Database, clock: Clock | None = None, **options: Any) -> Repository:
    options.setdefault("default_style", DEFAULT_STYLE)
    if clock is not None:
        options["clock"] = clock
    return Repository(database.sessions, **options)


@pytest_asyncio.fixture(loop_scope="function")
async def repo(database: Database) -> Repository:
    """A repository on a migrated database whose catalog holds `STYLES`."""
    repository = make_repository(database)
    await repository.sync_styles(STYLES)
    return repository
