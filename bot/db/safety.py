"""Each server's choice about the image safety check, kept apart from the repository's presets.

One row per server that chose; no row means the strict default. Read only for interactions in
channels Discord marks NSFW, so an ordinary /profile costs no query here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ServerSafety


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ServerSafetyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime] = _utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    async def relaxed_in_nsfw_channels(self, guild_id: int) -> bool:
        async with self._sessions() as session:
            row = await session.get(ServerSafety, guild_id)
            return bool(row is not None and row.relax_in_nsfw_channels)

    async def set_relaxed_in_nsfw_channels(self, guild_id: int, relaxed: bool, *, set_by: int) -> None:
        values = {"relax_in_nsfw_channels": relaxed, "set_by": set_by, "set_at": self._clock()}
        async with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ServerSafety)
            stmt = insert.values(guild_id=guild_id, **values)
            stmt = stmt.on_conflict_do_update(index_elements=[ServerSafety.guild_id], set_=values)
            await session.execute(stmt)

    async def forget(self, guild_id: int) -> None:
        """Back to the strict default (`/style reset`)."""
        async with self._sessions.begin() as session:
            await session.execute(delete(ServerSafety).where(ServerSafety.guild_id == guild_id))
