"""The engine and session factory for one database URL, and the schema upgrade the bot runs at start.

SQLite (aiosqlite) is the embedded default: the file and its folder are created on first use and
the schema is migrated with no manual step. `DATABASE_URL=postgresql://...` switches to asyncpg.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine

from mmpp.bot.db import migrate
from mmpp.bot.db.errors import BadDatabaseUrl, DatabaseUnavailable
from mmpp.logs import hide_url_password, log_event, register_secret

if TYPE_CHECKING:
    from mmpp.settings import Settings

log = logging.getLogger(__name__)

SQLITE_DRIVER: Final = "sqlite+aiosqlite"
POSTGRES_DRIVER: Final = "postgresql+asyncpg"
# How long a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_S: Final = 15.0


def normalize_url(url: str | URL) -> URL:
    """Parse a DATABASE_URL and pick the async driver, so `postgres://...` from a host panel works."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        shown = hide_url_password(url if isinstance(url, str) else url.render_as_string(hide_password=True))
        raise BadDatabaseUrl(
            f"'{shown}' is not a database URL; expected e.g. sqlite+aiosqlite:///mmpp.sqlite3 "
            "or postgresql+asyncpg://user:password@host/mmpp"
        ) from None
    # Whatever a driver or a traceback prints later, the password stays out of the logs.
    register_secret(parsed.password)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
        # libpq spells it sslmode; asyncpg takes the same values as ssl.
        if "sslmode" in parsed.query and "ssl" not in parsed.query:
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": parsed.query["sslmode"]})
        return parsed
    if backend == "sqlite":
        return parsed.set(drivername=SQLITE_DRIVER)
    raise BadDatabaseUrl(
        f"MMPP supports SQLite and PostgreSQL databases, not '{backend}' "
        f"({parsed.render_as_string(hide_password=True)})."
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Off by default in SQLite; without it the style foreign keys are decoration.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets lookups read while a log row is written; NORMAL sync is crash-safe in WAL mode.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


class Database:
    """An async engine plus `sessions`, the factory `Repository` is built on."""

    def __init__(self, url: str | URL, *, echo: bool = False, connect_timeout_s: float = 10.0) -> None:
        self.url = normalize_url(url)
        # Parameters never reach logs or error messages: a job's row carries its interaction token.
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.dialect == "sqlite":
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            options["connect_args"] = {"timeout": connect_timeout_s}
            # A bot idles for hours; a server restart or a proxy may drop pooled connections meanwhile.
            options["pool_pre_ping"] = True
            options["pool_recycle"] = 1800
        self.engine = create_async_engine(self.url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url)

    @property
    def dialect(self) -> str:
        """The backend: "sqlite" or "postgresql"."""
        return self.url.get_backend_name()

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # --- connections ---------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection; failing to open one raises `DatabaseUnavailable` with a one-line reason."""
        self._prepare_sqlite_folder()
        try:
            connection = await self.engine.connect()
        except (DBAPIError, OSError) as exc:  # OSError covers refused, unknown host and timeouts
            raise DatabaseUnavailable(self._unreachable(exc)) from exc
        try:
            yield connection
        finally:
            await connection.close()

    async def ping(self) -> None:
        async with self.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.dispose()

    # --- schema --------------------------------------------------------------------------------

    async def current_revision(self) -> str | None:
        """The schema revision the database is at; None when it has no MMPP schema yet."""
        async with self.connect() as connection:
            return await connection.run_sync(migrate.current_revision)

    async def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate up to `revision`; returns the revisions before and after."""
        return await self._migrate(lambda c: migrate.upgrade(c, revision))

    async def downgrade(self, revision: str) -> tuple[str | None, str | None]:
        """Migrate down to `revision` ("base" empties the schema); returns before and after."""
        return await self._migrate(lambda c: migrate.downgrade(c, revision))

    async def upgrade_to_head(self) -> str | None:
        """What the bot runs at start: create or migrate the schema, in one transaction."""
        before, after = await self.upgrade("head")
        if before != after:
            log_event(log, logging.INFO, "database_migrated", url=self.display_url, before=before, after=after)
        return after

    async def _migrate(self, step: Callable[[Connection], None]) -> tuple[str | None, str | None]:
        def run(connection: Connection) -> tuple[str | None, str | None]:
            migrate.lock_for_migration(connection)
            before = migrate.current_revision(connection)
            step(connection)
            return before, migrate.current_revision(connection)

        async with self.connect() as connection:
            result = await connection.run_sync(run)
            await connection.commit()
        return result

    # --- helpers -------------------------------------------------------------------------------

    def _sqlite_path(self) -> Path | None:
        database = self.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)

    def _prepare_sqlite_folder(self) -> None:
        path = self._sqlite_path()
        if path is None or path.parent.is_dir():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"Cannot create the folder for the SQLite database {path}: {exc.strerror or exc}."
            ) from exc

    def _unreachable(self, exc: BaseException) -> str:
        cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        where = self._sqlite_path() or self.display_url
        return f"Cannot reach the database at {where}: {reason} (check DATABASE_URL)."


async def open_database(url: str | URL, *, upgrade: bool = True) -> Database:
    """Connect, check, and (by default) migrate to head: the bot's one call at start."""
    database = Database(url)
    try:
        if upgrade:
            await database.upgrade_to_head()
        else:
            await database.ping()
    except BaseException:
        await database.dispose()
        raise
    return database
