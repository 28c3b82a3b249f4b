"""Everything the bot asks of the database: `Repository`, one object made of one mixin per concern.
The bot calls its methods and never writes SQL.

| mixin | module | what it keeps |
|---|---|---|
| `JobLog` | `job_log.py` | the generation log: quota reservations, outcomes, open jobs |
| `Styles` | `styles.py` | the catalog's published styles, and which each server shows |
| `Presets` | `presets.py` | the looks admins pin for a server or a channel (`looks.py`: what a look is) |
| `Resolution` | `resolution.py` | which look a job gets: channel override > server preset > default |
| `ServerWide` | `server_options.py` | each server's server-wide options |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.job_log import JobLog
from mmpp.bot.db.presets import Presets
from mmpp.bot.db.resolution import Resolution
from mmpp.bot.db.server_options import ServerWide
from mmpp.bot.db.styles import Styles

if TYPE_CHECKING:
    from mmpp.bot.db.database import Database
    from mmpp.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


class Repository(JobLog, Styles, Presets, Resolution, ServerWide):
    """The async repository the bot calls; one per process, safe to share between tasks."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        default_style: str,
        user_daily_quota: int = 0,
        server_daily_quota: int = 0,
        log_retention_days: int = 90,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`*_daily_quota` of 0 means unlimited. `clock` must return aware datetimes."""
        self._sessions = sessions
        self.default_style = default_style
        self.user_daily_quota = user_daily_quota
        self.server_daily_quota = server_daily_quota
        self.log_retention_days = log_retention_days
        self._clock = clock

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> Repository:
        return cls(
            database.sessions,
            default_style=settings.default_style,
            user_daily_quota=settings.user_daily_quota,
            server_daily_quota=settings.server_daily_quota,
            log_retention_days=settings.log_retention_days,
        )
