"""MMPP's database: models, migrations glue, and the repository the bot calls.

Names are imported on first use, so `mmpp --help` (which imports `mmpp.bot.db.cli`) does not pay for
SQLAlchemy and the database drivers.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from mmpp.bot.db.errors import (
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
    from mmpp.bot.db.database import Database, open_database
    from mmpp.bot.db.job_log import Usage
    from mmpp.bot.db.looks import ResolvedPreset
    from mmpp.bot.db.repository import Repository
    from mmpp.bot.db.styles import StyleInfo, StyleListing


class _OnlyMigrationSteps(logging.Filter):
    """Keep alembic's "Running upgrade 0001 -> 0002" lines; drop its per-connection chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


# Here rather than in mmpp.bot.db.migrate: alembic logs its plugin list at INFO while it is imported.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
logging.getLogger("alembic.runtime.migration").addFilter(_OnlyMigrationSteps())

_LAZY = {
    "Database": "mmpp.bot.db.database",
    "open_database": "mmpp.bot.db.database",
    "Repository": "mmpp.bot.db.repository",
    "ResolvedPreset": "mmpp.bot.db.looks",
    "StyleInfo": "mmpp.bot.db.styles",
    "StyleListing": "mmpp.bot.db.styles",
    "Usage": "mmpp.bot.db.job_log",
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
