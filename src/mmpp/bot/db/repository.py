"""Everything the bot asks of the database. The bot calls these methods and never writes SQL.

Resolution order for a job's look: channel override > server preset > the global default
(`settings.default_style`). A preset whose style the catalog no longer publishes, or that the
server has hidden, is skipped rather than failing the member's /profile.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, get_args

from sqlalchemy import (
    BigInteger,
    DateTime,
    Delete,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.errors import InvalidPresetValue, NoStyleShown, StyleHidden, UnknownStyle

# The log's names are re-exported: callers import them from the repository, as before the split.
from mmpp.bot.db.job_log import InteractionRef as InteractionRef
from mmpp.bot.db.job_log import JobKind as JobKind
from mmpp.bot.db.job_log import JobLog
from mmpp.bot.db.job_log import OpenJob as OpenJob
from mmpp.bot.db.job_log import Outcome as Outcome
from mmpp.bot.db.job_log import Usage as Usage
from mmpp.bot.db.models import (
    TOUCH_LENGTH,
    ChannelOverride,
    ServerPreset,
    ServerStyleSetting,
    Style,
)
from mmpp.bot.db.options import Declared, RoomOptions, declared, names, values
from mmpp.bot.db.server_options import ServerWide
from mmpp.errors import N_

if TYPE_CHECKING:
    from mmpp.bot.db.database import Database
    from mmpp.settings import Settings

SeedPolicy = Literal["random", "fixed", "per_user"]
PresetSource = Literal["channel", "server", "default"]

_UINT64_LIMIT: Final = 1 << 64
# Colours ("teal", "#1e90ff") and framing words ("head and shoulders") end up in a prompt: keep them short
# and plain so a preset cannot smuggle a paragraph of prompt text in.
_TOUCH: Final = re.compile(rf"[a-z0-9#][a-z0-9 #-]{{0,{TOUCH_LENGTH - 1}}}")


def utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedPreset(RoomOptions):
    """The look a /profile job gets, its room's options (`RoomOptions`), and where it came from (for
    `/style show`)."""

    style: str
    background: str | None = None
    framing: str | None = None
    seed_policy: SeedPolicy = "random"
    seed: int | None = None
    source: PresetSource = "default"
    set_by: int | None = None
    set_at: datetime | None = None

    def seed_for(self, user_id: int) -> int | None:
        """The seed for this member's job; None means draw a fresh random one."""
        if self.seed_policy == "fixed":
            return self.seed
        if self.seed_policy == "per_user" and self.seed is not None:
            # Stable across restarts and processes (unlike hash()), different for every member.
            digest = hashlib.blake2b(f"{self.seed}:{user_id}".encode(), digest_size=4).digest()
            return int.from_bytes(digest, "big")
        return None


# --- the one-query resolution --------------------------------------------------------------------


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


def _preset_from_row(row: Any, source: PresetSource) -> ResolvedPreset:
    return ResolvedPreset(
        style=row.style,
        background=row.background,
        framing=row.framing,
        seed_policy=row.seed_policy,
        seed=row.seed,
        **{name: getattr(row, name) for name in names(RoomOptions)},
        source=source,
        set_by=row.set_by,
        set_at=row.set_at,
    )


# --- validation ------------------------------------------------------------------------------------


# The refusal per field, whole sentences so each language can word them its own way.
_TOUCH_REFUSALS: Final = {
    "background": N_(
        "'{value}' is not a background MMPP can use. Write a colour or scene in English: up to {limit} "
        "letters, digits, spaces or dashes, or a colour like #1e90ff."
    ),
    "framing": N_(
        "'{value}' is not a framing MMPP can use: up to {limit} letters, digits, spaces or dashes."
    ),
}


def _touch(value: str | None, what: Literal["background", "framing"]) -> str | None:
    if value is None:
        return None
    clean = " ".join(value.split()).lower()
    if not clean:
        return None
    if not _TOUCH.fullmatch(clean):
        raise InvalidPresetValue(_TOUCH_REFUSALS[what], value=value, limit=TOUCH_LENGTH)
    return clean


def _seed(policy: str, seed: int | None) -> int | None:
    if policy not in get_args(SeedPolicy):
        raise InvalidPresetValue(
            N_("'{policy}' is not a seed policy; pick one of {choices}."),
            policy=policy, choices=", ".join(get_args(SeedPolicy)),
        )
    if policy == "random":
        return None
    if seed is None:
        # Drawn once and stored, so every member (or every job of one member) reuses it.
        return secrets.randbits(32)
    if not 0 <= seed < _UINT64_LIMIT:
        raise InvalidPresetValue(N_("The seed {seed} is out of range; use a whole number from 0 to 2^64-1."), seed=seed)
    return seed


class Repository(JobLog, ServerWide):
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

    # --- styles --------------------------------------------------------------------------------

    async def sync_styles(self, styles: Iterable[StyleLike], renamed: Mapping[str, str] | None = None) -> None:
        """Record the catalog's published styles at start. Styles it no longer ships are disabled,
        not deleted: presets and history still name them. `renamed` (old -> new, see
        `StyleCatalog.renamed`) moves presets, channel overrides and show/hide choices that name a
        renamed built-in onto its new name, so a room keeps its look across the rename."""
        now = self._clock()
        rows = {s.name: {"name": s.name, "description": s.description or ""} for s in styles}
        async with self._sessions.begin() as session:
            if rows:
                stmt = self._insert(session, Style).values(
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
                    await self._move_style(session, old, new)
            await session.execute(
                update(Style)
                .where(Style.name.not_in(list(rows)), Style.enabled.is_(True))
                .values(enabled=False, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    async def list_styles(self, guild_id: int | None = None) -> list[StyleListing]:
        """Published styles by name; with a server, each says whether that server shows it."""
        shown = ServerStyleSetting
        on_guild = and_(shown.style == Style.name, shown.guild_id == guild_id) if guild_id is not None else false()
        stmt = (
            select(Style.name, Style.description, func.coalesce(shown.enabled, true()))
            .outerjoin(shown, on_guild)
            .where(Style.enabled.is_(True))
            .order_by(Style.name)
        )
        async with self._sessions() as session:
            result = await session.execute(stmt)
            return [StyleListing(name, description, bool(enabled)) for name, description, enabled in result]

    async def set_style_enabled(self, guild_id: int, style: str, enabled: bool, set_by: int) -> None:
        """Show or hide one published style on one server."""
        values = {"enabled": enabled, "set_by": set_by, "set_at": self._clock()}
        async with self._sessions.begin() as session:
            published, _ = await self._style_state(session, guild_id, style)
            if not published:
                raise UnknownStyle(style)
            stmt = self._insert(session, ServerStyleSetting).values(guild_id=guild_id, style=style, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[ServerStyleSetting.guild_id, ServerStyleSetting.style],
                set_={key: stmt.excluded[key] for key in values},
            )
            await session.execute(stmt)

    # --- presets -------------------------------------------------------------------------------

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
        preset = self._new_preset(style, background, framing, seed_policy, seed, set_by, "server", options)
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
        preset = self._new_preset(style, background, framing, seed_policy, seed, set_by, "channel", options)
        keys = {"guild_id": guild_id, "channel_id": channel_id}
        await self._upsert_preset(ChannelOverride, keys, guild_id, preset)
        return preset

    async def clear_channel_override(self, guild_id: int, channel_id: int) -> bool:
        """Back to the server preset in that channel; False if it had no override."""
        stmt = delete(ChannelOverride).where(
            ChannelOverride.guild_id == guild_id, ChannelOverride.channel_id == channel_id
        )
        return await self._delete(stmt) > 0

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
            return None if row is None else _preset_from_row(row, "server")

    async def list_channel_overrides(self, guild_id: int) -> dict[int, ResolvedPreset]:
        stmt = select(ChannelOverride).where(ChannelOverride.guild_id == guild_id)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
            return {row.channel_id: _preset_from_row(row, "channel") for row in rows}

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
        return _preset_from_row(row, _SOURCES[row.rank])

    async def _instead_of_default(self, guild_id: int) -> ResolvedPreset:
        """No preset applies and the default style is not shown here. Hidden by this server: the
        first style it still shows. Not published at all: the default as configured (the bot
        publishes it at start; a bare repository may not have)."""
        async with self._sessions() as session:
            published, _ = await self._style_state(session, guild_id, self.default_style)
        if published:
            shown = [listing.name for listing in await self.list_styles(guild_id) if listing.enabled]
            if not shown:
                raise NoStyleShown()
            return ResolvedPreset(style=shown[0])
        return ResolvedPreset(style=self.default_style)

    # --- helpers -------------------------------------------------------------------------------

    def _new_preset(
        self,
        style: str,
        background: str | None,
        framing: str | None,
        seed_policy: str,
        seed: int | None,
        set_by: int,
        source: PresetSource,
        options: dict[str, Any],
    ) -> ResolvedPreset:
        return ResolvedPreset(
            style=style,
            background=_touch(background, "background"),
            framing=_touch(framing, "framing"),
            seed_policy=seed_policy,  # type: ignore[arg-type]  # checked by _seed
            seed=_seed(seed_policy, seed),
            **options,
            source=source,
            set_by=set_by,
            set_at=self._clock(),
        )

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
                published, shown = await self._style_state(session, guild_id, preset.style)
                if not published:
                    raise UnknownStyle(preset.style)
                if not shown:
                    raise StyleHidden(preset.style)
                # One atomic statement on both backends: concurrent writers never see "no row yet"
                # twice, and every column comes from the same writer.
                stmt = self._insert(session, model).values(**keys, **row)
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(keys), set_={key: stmt.excluded[key] for key in row}
                )
                await session.execute(stmt)
        except IntegrityError as exc:
            # The foreign key backs up the check above (e.g. a style row removed by hand meanwhile).
            raise UnknownStyle(preset.style) from exc

    @staticmethod
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

    @staticmethod
    async def _style_state(session: AsyncSession, guild_id: int, style: str) -> tuple[bool, bool]:
        """(published by the catalog, shown on this server)."""
        shown = ServerStyleSetting
        stmt = (
            select(Style.enabled, func.coalesce(shown.enabled, true()))
            .outerjoin(shown, and_(shown.style == Style.name, shown.guild_id == guild_id))
            .where(Style.name == style)
        )
        row = (await session.execute(stmt)).first()
        return (False, False) if row is None else (bool(row[0]), bool(row[1]))

    @staticmethod
    def _insert(session: AsyncSession, model: type[Any]) -> Any:
        """INSERT with the dialect's ON CONFLICT support (both spell it the same way)."""
        dialect = session.get_bind().dialect.name
        return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)

    async def _delete(self, stmt: Delete) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]
