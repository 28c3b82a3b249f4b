"""The published styles as the database keeps them: the catalog's list recorded at start (`sync_styles`),
and which of them each server shows (`list_styles`, `set_style_enabled`).

A style the catalog stops shipping is disabled, never deleted: presets and history still name it.
`style_state` is the one check every write of a look makes (published? shown on this server?);
`listings` is `list_styles` for a caller that already holds a session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, delete, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.errors import UnknownStyle
from mmpp.bot.db.models import ChannelOverride, ServerPreset, ServerStyleSetting, Style, upsert


class StyleLike(Protocol):
    """Anything with a name and a description: `StyleInfo`, or the catalog's own style objects."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StyleInfo:
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class StyleListing:
    """A published style as one server sees it; `enabled` is False where its admins hid it."""

    name: str
    description: str
    enabled: bool


class Styles:
    """Mixed into `Repository`; needs its `_sessions` and `_clock`."""

    _sessions: async_sessionmaker[AsyncSession]
    _clock: Callable[[], datetime]

    async def sync_styles(self, styles: Iterable[StyleLike], renamed: Mapping[str, str] | None = None) -> None:
        """Record the catalog's published styles at start. Styles it no longer ships are disabled,
        not deleted: presets and history still name them. `renamed` (old -> new, see
        `StyleCatalog.renamed`) moves presets, channel overrides and show/hide choices that name a
        renamed built-in onto its new name, so a room keeps its look across the rename."""
        now = self._clock()
        rows = {s.name: {"name": s.name, "description": s.description or ""} for s in styles}
        async with self._sessions.begin() as session:
            if rows:
                stmt = upsert(session, Style).values(
                    [{**row, "enabled": True, "first_seen_at": now, "updated_at": now} for row in rows.values()]
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=[Style.name],
                    set_={"description": stmt.excluded.description, "enabled": True, "updated_at": now},
                    # An unchanged catalog writes nothing at start.
                    where=or_(Style.description != stmt.excluded.description, Style.enabled.is_(False)),
                )
                await session.execute(stmt)
            for old, new in (renamed or {}).items():
                if new in rows:
                    await _move_style(session, old, new)
            await session.execute(
                update(Style)
                .where(Style.name.not_in(list(rows)), Style.enabled.is_(True))
                .values(enabled=False, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    async def list_styles(self, guild_id: int | None = None) -> list[StyleListing]:
        """Published styles by name; with a server, each says whether that server shows it."""
        async with self._sessions() as session:
            return await listings(session, guild_id)

    async def set_style_enabled(self, guild_id: int, style: str, enabled: bool, set_by: int) -> None:
        """Show or hide one published style on one server."""
        values = {"enabled": enabled, "set_by": set_by, "set_at": self._clock()}
        async with self._sessions.begin() as session:
            published, _ = await style_state(session, guild_id, style)
            if not published:
                raise UnknownStyle(style)
            stmt = upsert(session, ServerStyleSetting).values(guild_id=guild_id, style=style, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[ServerStyleSetting.guild_id, ServerStyleSetting.style],
                set_={key: stmt.excluded[key] for key in values},
            )
            await session.execute(stmt)


async def listings(session: AsyncSession, guild_id: int | None) -> list[StyleListing]:
    """`Styles.list_styles` inside a session the caller holds."""
    shown = ServerStyleSetting
    on_guild = and_(shown.style == Style.name, shown.guild_id == guild_id) if guild_id is not None else false()
    stmt = (
        select(Style.name, Style.description, func.coalesce(shown.enabled, true()))
        .outerjoin(shown, on_guild)
        .where(Style.enabled.is_(True))
        .order_by(Style.name)
    )
    result = await session.execute(stmt)
    return [StyleListing(name, description, bool(enabled)) for name, description, enabled in result]


async def style_state(session: AsyncSession, guild_id: int, style: str) -> tuple[bool, bool]:
    """(published by the catalog, shown on this server)."""
    shown = ServerStyleSetting
    stmt = (
        select(Style.enabled, func.coalesce(shown.enabled, true()))
        .outerjoin(shown, and_(shown.style == Style.name, shown.guild_id == guild_id))
        .where(Style.name == style)
    )
    row = (await session.execute(stmt)).first()
    return (False, False) if row is None else (bool(row[0]), bool(row[1]))


async def _move_style(session: AsyncSession, old: str, new: str) -> None:
    """Rows naming `old` now name `new`. A server that already chose to show or hide `new`
    keeps that choice; its choice about `old` goes."""
    for model in (ServerPreset, ChannelOverride):
        await session.execute(
            update(model).where(model.style == old).values(style=new).execution_options(synchronize_session=False)
        )
    shown = ServerStyleSetting
    decided = select(shown.guild_id).where(shown.style == new).scalar_subquery()
    await session.execute(
        update(shown).where(shown.style == old, shown.guild_id.not_in(decided)).values(style=new)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(shown).where(shown.style == old).execution_options(synchronize_session=False))
