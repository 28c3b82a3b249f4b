"""Database errors a person can act on; `mmpp.cli.main` and the bot print their message as is.

Kept free of SQLAlchemy imports so the CLI can name them without loading the database stack.
"""

from __future__ import annotations

from datetime import datetime

from mmpp.errors import N_, UserFacingError


class DatabaseUnavailable(UserFacingError):
    code = "database_unavailable"


class MigrationError(UserFacingError):
    code = "migration_failed"


class UnknownStyle(UserFacingError):
    code = "unknown_style"

    def __init__(self, style: str) -> None:
        super().__init__(
            N_("There is no style called '{style}'. Use {styles_command} to see the styles you can pick."), style=style
        )
        self.style = style


class StyleHidden(UserFacingError):
    code = "style_hidden"

    def __init__(self, style: str, *, title: str | None = None) -> None:
        # A member reads the style's title in their language where the caller knows it, else its name.
        super().__init__(
            N_("The style {title} isn't offered on this server. Use {styles_command} to see the styles you can pick."),
            title=title or style,
        )
        self.style = style


class NoStyleShown(UserFacingError):
    code = "no_style_shown"

    def __init__(self) -> None:
        super().__init__(
            N_("This server has turned every style off, so I can't draw portraits here right now. "
               "Please ask the server's admins.")
        )


class InvalidPresetValue(UserFacingError):
    code = "invalid_preset"


class QuotaExceeded(UserFacingError):
    """A daily limit is reached; `scope` says whose ("user" or "server")."""

    code = "quota_exceeded"

    def __init__(
        self, message: str, *, scope: str, limit: int, used: int, resets_at: datetime, when: str = ""
    ) -> None:
        super().__init__(message, code=f"quota_{scope}", limit=limit, used=used, when=when)
        self.scope = scope
        self.limit = limit
        self.used = used
        self.resets_at = resets_at


class BadDatabaseUrl(UserFacingError):
    code = "bad_database_url"
