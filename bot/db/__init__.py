"""MMPP's database: models, migrations glue, and the repository the bot calls.

Names are imported on first use, so `mmpp --help` (which imports `bot.db.cli`) does not pay for
SQLAlchemy and the database drivers.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from bot.db.errors import (
    BadDatabaseUrl,
    DatabaseUnavailable,
    InvalidPresetValue,
    MigrationError,
    NoStyleShown,
    QuotaExceeded,
    StyleHidden,
    UnknownStyle,
)

if TYPE_CHECKING:
    from bot.db.database import Database, open_database
    from bot.db.repository import Repository, ResolvedPreset, StyleInfo, StyleListing, Usage


class _OnlyMigrationSteps(logging.Filter):
    """Keep alembic's "Running upgrade 0001 -> 0002" lines; drop its per-connection chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


# Here rather than in bot.db.migrate: alembic logs its plugin list at INFO while it is imported.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
logging.getLogger("alembic.runtime.migration").addFilter(_OnlyMigrationSteps())

_LAZY = {
    "Database": "bot.db.database",
    "open_database": "bot.db.database",
    "Repository": "bot.db.repository",
    "ResolvedPreset": "bot.db.repository",
    "StyleInfo": "bot.db.repository",
    "StyleListing": "bot.db.repository",
    "Usage": "bot.db.repository",
}

__all__ = [
    "BadDatabaseUrl",
    "Database",
    "DatabaseUnavailable",
    "InvalidPresetValue",
    "MigrationError",
    "NoStyleShown",
    "QuotaExceeded",
    "Repository",
    "ResolvedPreset",
    "StyleHidden",
    "StyleInfo",
    "StyleListing",
    "UnknownStyle",
    "Usage",
    "open_database",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
