"""Database errors a person can act on; `mmpp.cli.main` and the bot print their message as is.

Kept free of SQLAlchemy imports so the CLI can name them without loading the database stack.
"""

from __future__ import annotations

from datetime import datetime

from mmpp.errors import UserFacingError


class DatabaseUnavailable(UserFacingError):
    code = "database_unavailable"


class MigrationError(UserFacingError):
    code = "migration_failed"


class UnknownStyle(UserFacingError):
    code = "unknown_style"

    def __init__(self, style: str) -> None:
        super().__init__(f"There is no style called '{style}'. Use /style list to see the styles you can pick.")
        self.style = style


class StyleHidden(UserFacingError):
    code = "style_hidden"

    def __init__(self, style: str) -> None:
        super().__init__(
            f"The style '{style}' is turned off on this server. "
            "An admin can turn it back on, or use /style list to see the styles you can pick."
        )
        self.style = style


class NoStyleShown(UserFacingError):
    code = "no_style_shown"

    def __init__(self) -> None:
        super().__init__(
            "This server has turned every style off, so I can't draw portraits here. "
            "An admin can turn one back on with /style available."
        )


class InvalidPresetValue(UserFacingError):
    code = "invalid_preset"


class QuotaExceeded(UserFacingError):
    """A daily limit is reached; `scope` says whose ("user" or "server")."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, scope: str, limit: int, used: int, resets_at: datetime) -> None:
        super().__init__(message, code=f"quota_{scope}")
        self.scope = scope
        self.limit = limit
        self.used = used
        self.resets_at = resets_at


class BadDatabaseUrl(UserFacingError):
    code = "bad_database_url"
