"""The looks admins pin: a server's preset and each channel's override (`/style set`, `/style reset`),
written whole and read back as set (`/style show`). Which one a job gets is `resolution.py`'s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.errors import StyleHidden, UnknownStyle
from mmpp.bot.db.looks import ResolvedPreset, SeedPolicy, new_preset, preset_from_row
from mmpp.bot.db.models import ChannelOverride, ServerPreset, ServerStyleSetting, upsert
from mmpp.bot.db.options import RoomOptions, values
from mmpp.bot.db.styles import style_state


class Presets:
    """Mixed into `Repository`; needs its `_sessions` and `_clock`."""

    _sessions: async_sessionmaker[AsyncSession]
    _clock: Callable[[], datetime]

    async def set_server_preset(
        self,
        guild_id: int,
        style: str,
        *,
        background: str | None = None,
        framing: str | None = None,
        seed_policy: SeedPolicy = "random",
        seed: int | None = None,
        set_by: int,
        **options: Any,
    ) -> ResolvedPreset:
        """Pin the server's look and its room options (`RoomOptions`, by name; unset: their defaults).
        Two admins at once: the last write wins, whole, never mixed."""
        preset = new_preset(
            style, background, framing, seed_policy, seed,
            set_by=set_by, clock=self._clock, source="server", options=options,
        )
        await self._upsert_preset(ServerPreset, {"guild_id": guild_id}, guild_id, preset)
        return preset

    async def set_channel_override(
        self,
        guild_id: int,
        channel_id: int,
        style: str,
        *,
        background: str | None = None,
        framing: str | None = None,
        seed_policy: SeedPolicy = "random",
        seed: int | None = None,
        set_by: int,
        **options: Any,
    ) -> ResolvedPreset:
        """Give one channel its own complete look; the server preset does not fill its gaps."""
        preset = new_preset(
            style, background, framing, seed_policy, seed,
            set_by=set_by, clock=self._clock, source="channel", options=options,
        )
        keys = {"guild_id": guild_id, "channel_id": channel_id}
        await self._upsert_preset(ChannelOverride, keys, guild_id, preset)
        return preset

    async def clear_channel_override(self, guild_id: int, channel_id: int) -> bool:
        """Back to the server preset in that channel; False if it had no override."""
        stmt = delete(ChannelOverride).where(
            ChannelOverride.guild_id == guild_id, ChannelOverride.channel_id == channel_id
        )
        async with self._sessions.begin() as session:
            result = await session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount) > 0  # type: ignore[attr-defined]

    async def reset_server(self, guild_id: int) -> None:
        """Forget the server's preset, channel overrides and hidden styles (its history stays)."""
        async with self._sessions.begin() as session:
            for model in (ChannelOverride, ServerPreset, ServerStyleSetting):
                await session.execute(
                    delete(model).where(model.guild_id == guild_id).execution_options(synchronize_session=False)
                )

    async def get_server_preset(self, guild_id: int) -> ResolvedPreset | None:
        """The stored server preset as set, even if its style is hidden now (for `/style show`)."""
        async with self._sessions() as session:
            row = await session.get(ServerPreset, guild_id)
            return None if row is None else preset_from_row(row, "server")

    async def list_channel_overrides(self, guild_id: int) -> dict[int, ResolvedPreset]:
        stmt = select(ChannelOverride).where(ChannelOverride.guild_id == guild_id)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
            return {row.channel_id: preset_from_row(row, "channel") for row in rows}

    async def _upsert_preset(
        self,
        model: type[ServerPreset] | type[ChannelOverride],
        keys: dict[str, int],
        guild_id: int,
        preset: ResolvedPreset,
    ) -> None:
        row = {
            "style": preset.style,
            "background": preset.background,
            "framing": preset.framing,
            "seed_policy": preset.seed_policy,
            "seed": preset.seed,
            **values(RoomOptions, preset),
            "set_by": preset.set_by,
            "set_at": preset.set_at,
        }
        try:
            async with self._sessions.begin() as session:
                published, shown = await style_state(session, guild_id, preset.style)
                if not published:
                    raise UnknownStyle(preset.style)
                if not shown:
                    raise StyleHidden(preset.style)
                # One atomic statement on both backends: concurrent writers never see "no row yet"
                # twice, and every column comes from the same writer.
                stmt = upsert(session, model).values(**keys, **row)
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(keys), set_={key: stmt.excluded[key] for key in row}
                )
                await session.execute(stmt)
        except IntegrityError as exc:
            # The foreign key backs up the check above (e.g. a style row removed by hand meanwhile).
            raise UnknownStyle(preset.style) from exc
