"""Alembic environment for MMPP.

Normally `mmpp.bot.db.migrate` hands over an open connection (from the bot's own async engine, with its
pragmas and transaction). Running the `alembic` command with an ini file also works: it builds an
engine from the URL. `--sql` (offline) renders the DDL for a DBA to apply.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from mmpp.bot.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("No database URL: pass one to mmpp.bot.db.migrate or set sqlalchemy.url.")
    return str(url)


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_from_url() -> None:
    from mmpp.bot.db.database import Database
    from mmpp.bot.db.migrate import lock_for_migration

    database = Database(_url())
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(lock_for_migration)
            await connection.run_sync(run_migrations)
    finally:
        await database.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    run_migrations(connection)
else:
    asyncio.run(run_migrations_from_url())
