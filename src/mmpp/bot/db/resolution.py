"""Which look a job gets, in one query: channel override > server preset > the global default
(`settings.default_style`).

A preset whose style the catalog no longer publishes, or that the server has hidden, is skipped rather
than failing the member's /profile; a server that hides the default style gets the first style it shows.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    false,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.errors import NoStyleShown
from mmpp.bot.db.looks import PresetSource, ResolvedPreset, preset_from_row
from mmpp.bot.db.models import ChannelOverride, ServerPreset, ServerStyleSetting, Style
from mmpp.bot.db.options import Declared, RoomOptions, declared, names
from mmpp.bot.db.styles import listings, style_state


def _default_column(option: Declared) -> Any:
    """An option's default as a SQL value, typed as its column (both backends must agree in the union)."""
    if option.default is None:
        return cast(null(), option.how.column)
    if isinstance(option.default, bool):
        return true() if option.default else false()
    return cast(literal(option.default), option.how.column)


def _ranked(model: type[ServerPreset] | type[ChannelOverride], rank: int, where: Any) -> Select[Any]:
    shown = ServerStyleSetting
    return (
        select(
            literal(rank, Integer).label("rank"),
            model.style,
            model.background,
            model.framing,
            model.seed_policy,
            model.seed,
            *(getattr(model, name) for name in names(RoomOptions)),
            model.set_by,
            model.set_at,
        )
        .join(Style, and_(Style.name == model.style, Style.enabled.is_(True)))
        .outerjoin(shown, and_(shown.guild_id == model.guild_id, shown.style == model.style))
        .where(where, or_(shown.enabled.is_(None), shown.enabled.is_(True)))
    )


def _default_ranked() -> Select[Any]:
    """The default style as a last-ranked row, present only while this server shows it: hiding the
    default must take it away like hiding any other style."""
    shown = ServerStyleSetting
    return (
        select(
            literal(3, Integer).label("rank"),
            Style.name.label("style"),
            cast(null(), String).label("background"),
            cast(null(), String).label("framing"),
            cast(literal("random"), String).label("seed_policy"),
            cast(null(), BigInteger).label("seed"),
            *(_default_column(option).label(option.name) for option in declared(RoomOptions)),
            cast(null(), BigInteger).label("set_by"),
            cast(null(), DateTime(timezone=True)).label("set_at"),
        )
        .outerjoin(shown, and_(shown.guild_id == bindparam("guild_id"), shown.style == Style.name))
        .where(
            Style.name == bindparam("default_style"),
            Style.enabled.is_(True),
            or_(shown.enabled.is_(None), shown.enabled.is_(True)),
        )
    )


# Built once: SQLAlchemy caches its compiled form, so a lookup only binds three values.
_RESOLVE: Final = (
    union_all(
        _ranked(
            ChannelOverride,
            1,
            and_(
                ChannelOverride.guild_id == bindparam("guild_id"),
                ChannelOverride.channel_id == bindparam("channel_id"),
            ),
        ),
        _ranked(ServerPreset, 2, ServerPreset.guild_id == bindparam("guild_id")),
        _default_ranked(),
    )
    .order_by("rank")
    .limit(1)
)
_SOURCES: Final[dict[int, PresetSource]] = {1: "channel", 2: "server", 3: "default"}


class Resolution:
    """Mixed into `Repository`; needs its `_sessions` and `default_style`."""

    _sessions: async_sessionmaker[AsyncSession]
    default_style: str

    async def resolve(self, guild_id: int | None, channel_id: int | None) -> ResolvedPreset:
        """The look for a job here, in one query: channel override > server preset > default."""
        if guild_id is None:
            # DMs: a member generates for themselves and may pick any published style.
            return ResolvedPreset(style=self.default_style, allow_member_choice=True)
        async with self._sessions() as session:
            values = {"guild_id": guild_id, "channel_id": channel_id, "default_style": self.default_style}
            row = (await session.execute(_RESOLVE, values)).first()
        if row is None:
            return await self._instead_of_default(guild_id)
        return preset_from_row(row, _SOURCES[row.rank])

    async def _instead_of_default(self, guild_id: int) -> ResolvedPreset:
        """No preset applies and the default style is not shown here. Hidden by this server: the
        first style it still shows. Not published at all: the default as configured (the bot
        publishes it at start; a bare repository may not have)."""
        async with self._sessions() as session:
            published, _ = await style_state(session, guild_id, self.default_style)
            if not published:
                return ResolvedPreset(style=self.default_style)
            shown = [listing.name for listing in await listings(session, guild_id) if listing.enabled]
        if not shown:
            raise NoStyleShown()
        return ResolvedPreset(style=shown[0])
