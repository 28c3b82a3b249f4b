"""`mmpp db upgrade [REV] | downgrade REV | current`: the schema commands, without an alembic.ini."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mmpp.bot.db.database import Database

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "db",
        help="create, upgrade or inspect the database schema",
        description="Manage the database schema. The bot also upgrades to the newest schema when it starts.",
    )
    _url_option(parser, default=None)
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    upgrade = actions.add_parser("upgrade", help="migrate up (default: to the newest schema)")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    _url_option(upgrade)
    upgrade.set_defaults(func=_upgrade)

    downgrade = actions.add_parser("downgrade", help="migrate down to REV ('base' removes every table)")
    downgrade.add_argument("revision", help="target revision, e.g. 0001, -1 or base")
    _url_option(downgrade)
    downgrade.set_defaults(func=_downgrade)

    current = actions.add_parser("current", help="print the database's schema revision")
    _url_option(current)
    current.set_defaults(func=_current)


def _url_option(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    # SUPPRESS on the action parsers, so `mmpp db --database-url X upgrade` is not reset to None.
    parser.add_argument(
        "--database-url", default=default, metavar="URL", help="database to use (default: DATABASE_URL)"
    )


def _upgrade(args: argparse.Namespace) -> int:
    before, after = _run(args, lambda db: db.upgrade(args.revision))
    _report(args, before, after)
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    before, after = _run(args, lambda db: db.downgrade(args.revision))
    _report(args, before, after)
    return 0


def _current(args: argparse.Namespace) -> int:
    from mmpp.bot.db.migrate import head_revision

    revision = _run(args, lambda db: db.current_revision())
    head = head_revision()
    if revision is None:
        print("empty (no MMPP schema yet; `mmpp db upgrade` or starting the bot creates it)")
    elif revision == head:
        print(f"{revision} (head)")
    else:
        print(f"{revision} (head is {head}; run `mmpp db upgrade`)")
    return 0


def _report(args: argparse.Namespace, before: str | None, after: str | None) -> None:
    if before == after:
        print(f"already at {after or 'base (empty)'}")
    else:
        print(f"migrated {before or 'base (empty)'} -> {after or 'base (empty)'}")


def _run(args: argparse.Namespace, action: Callable[[Database], Awaitable[T]]) -> T:
    from mmpp.bot.db.database import Database
    from mmpp.settings import load_settings

    url = args.database_url or load_settings(args.env_file).database_url

    async def main() -> T:
        async with Database(url) as database:
            return await action(database)

    return asyncio.run(main())
