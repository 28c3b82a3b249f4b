"""Each server's server-wide options (`ServerOptions`: whether finished portraits are posted at once,
how many takes one request draws, the image safety check), kept apart from the looks a server or a
channel pins. One row per server that chose; no row means the declared defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.models import ServerOptionsRow, upsert
from mmpp.bot.db.options import ServerOptions, names, values


class ServerWide:
    """Mixed into `Repository`; needs its `_sessions` and `_clock`."""

    _sessions: async_sessionmaker[AsyncSession]
    _clock: Callable[[], datetime]

    async def server_options(self, guild_id: int) -> ServerOptions:
        async with self._sessions() as session:
            row = await session.get(ServerOptionsRow, guild_id)
            if row is None:
                return ServerOptions()
            return ServerOptions(**{name: getattr(row, name) for name in names(ServerOptions)})

    async def set_server_options(self, guild_id: int, *, set_by: int, **options: Any) -> None:
        """Change the options given (None: keep what was set); a new row starts from the defaults."""
        ServerOptions(**options)  # a name that is not a declared option is a TypeError here, not a lost write
        changed: dict[str, object] = {name: value for name, value in options.items() if value is not None}
        changed |= {"set_by": set_by, "set_at": self._clock()}
        first = {**values(ServerOptions, ServerOptions()), **changed}
        async with self._sessions.begin() as session:
            stmt = upsert(session, ServerOptionsRow).values(guild_id=guild_id, **first)
            stmt = stmt.on_conflict_do_update(index_elements=[ServerOptionsRow.guild_id], set_=changed)
            await session.execute(stmt)

    async def forget_server_options(self, guild_id: int) -> None:
        """Back to the defaults (`/style reset`)."""
        async with self._sessions.begin() as session:
            await session.execute(delete(ServerOptionsRow).where(ServerOptionsRow.guild_id == guild_id))
