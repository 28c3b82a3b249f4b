"""Each server's server-wide choices, kept apart from the repository's presets: the image safety
check, whether finished portraits are posted in the channel at once ("public by default"), and how
many takes one request draws.

One row per server that chose; no row means the strict check and private portraits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.models import ServerSafety


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

    async def public_by_default(self, guild_id: int) -> bool:
        async with self._sessions() as session:
            row = await session.get(ServerSafety, guild_id)
            return bool(row is not None and row.public_by_default)

    async def candidates(self, guild_id: int) -> int | None:
        """The takes per request this server chose; None: the bot's CANDIDATES."""
        async with self._sessions() as session:
            row = await session.get(ServerSafety, guild_id)
            return None if row is None else row.candidates

    async def set_relaxed_in_nsfw_channels(self, guild_id: int, relaxed: bool, *, set_by: int) -> None:
        await self.set_options(guild_id, relax_in_nsfw_channels=relaxed, set_by=set_by)

    async def set_options(
        self, guild_id: int, *, set_by: int, relax_in_nsfw_channels: bool | None = None,
        public_by_default: bool | None = None, candidates: int | None = None,
    ) -> None:
        """Change the choices given (None: keep what was set); a new row starts from the defaults."""
        changed: dict[str, object] = {"set_by": set_by, "set_at": self._clock()}
        if relax_in_nsfw_channels is not None:
            changed["relax_in_nsfw_channels"] = relax_in_nsfw_channels
        if public_by_default is not None:
            changed["public_by_default"] = public_by_default
        if candidates is not None:
            changed["candidates"] = candidates
        first = {"relax_in_nsfw_channels": False, "public_by_default": False, **changed}
        async with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ServerSafety)
            stmt = insert.values(guild_id=guild_id, **first)
            stmt = stmt.on_conflict_do_update(index_elements=[ServerSafety.guild_id], set_=changed)
            await session.execute(stmt)

    async def forget(self, guild_id: int) -> None:
        """Back to the strict default (`/style reset`)."""
        async with self._sessions.begin() as session:
            await session.execute(delete(ServerSafety).where(ServerSafety.guild_id == guild_id))
