"""Alembic, driven from code: a Config built in memory that finds `migrations/` from the package.

No `alembic.ini` is needed, so `mmpp db ...` and the bot's own upgrade at start work from any
working directory and from an installed wheel. Every function takes an open synchronous
connection (`AsyncConnection.run_sync` hands one over), so migrations run on the same engine,
pragmas and transaction as the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection

from mmpp.bot.db.errors import MigrationError

# Any fixed number: it only has to be the same in every MMPP process sharing one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x4D4D5050  # "MMPP"


def migrations_dir() -> Path:
    from mmpp import migrations

    # __path__ rather than __file__: an editable install made before migrations/ had an
    # __init__.py still maps it as a namespace package, which has no __file__.
    for folder in map(Path, migrations.__path__):
        if (folder / "env.py").is_file():
            return folder.resolve()
    raise MigrationError(f"MMPP's migrations folder is missing env.py (looked in {list(migrations.__path__)}).")


def alembic_config(*, connection: Connection | None = None, url: str | None = None) -> Config:
    """A Config for `migrations/`; `migrations/env.py` uses `connection` if given, else `url`."""
    config = Config()
    # ConfigParser interpolates %, which a path could contain.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["url"] = url
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - only if versions/ is empty or branched
        raise MigrationError("MMPP's migrations have no single head revision; the installation is broken.")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for a database MMPP has never touched."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def lock_for_migration(connection: Connection) -> None:
    """Let only one process migrate at a time (two bot processes may start together).

    Call first thing in the migration's transaction; the lock ends with it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        # pysqlite leaves DDL outside any transaction; an explicit one makes the migration atomic,
        # and IMMEDIATE takes the write lock now so a second migrator waits instead of failing.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(connection: Connection, revision: str = "head") -> None:
    _check_known(connection)
    _run(lambda config: command.upgrade(config, revision), connection, revision)


def downgrade(connection: Connection, revision: str) -> None:
    _check_known(connection)
    _run(lambda config: command.downgrade(config, revision), connection, revision)


def _check_known(connection: Connection) -> None:
    current = current_revision(connection)
    if current is None:
        return
    try:
        script_directory().get_revision(current)
    except CommandError:
        raise MigrationError(
            f"The database is at schema revision '{current}', which this version of MMPP does not know; "
            "it was probably upgraded by a newer MMPP. Run that version, or restore a backup."
        ) from None


def _run(action: Callable[[Config], None], connection: Connection, revision: str) -> None:
    config = alembic_config(connection=connection)
    try:
        action(config)
    except CommandError as exc:
        raise MigrationError(f"Cannot migrate to '{revision}': {exc}") from None
