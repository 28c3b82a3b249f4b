"""The tables, as typed declarative models. `migrations/` must create exactly this (a test checks).
Also `upsert`, the INSERT ... ON CONFLICT every writer of these tables shares.

Column names say `guild` because that is Discord's word in every id the bot handles; messages to
people say "server".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mmpp.bot.db.options import RoomOptions, ServerOptions, columns
from mmpp.bot.db.types import Snowflake, UInt64, UTCDateTime

# Named constraints let later migrations (and SQLite batch mode) refer to them by name.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STYLE_NAME_LENGTH: Final = 64
TOUCH_LENGTH: Final = 32
REASON_LENGTH: Final = 200
LANGUAGE_LENGTH: Final = 8
SEED_POLICIES: Final = ("random", "fixed", "per_user")
# "done" is what rows written before delivery was tracked say; new rows say how the portrait reached
# the member: "delivered" (the reply), "delivered_fallback" (a channel message or DM), "undelivered".
# "refused": a reservation given back before the GPU was used; "interrupted": a restart or stop.
# "filtered": drawn, but the image safety check refused it, so it was never posted.
OUTCOMES: Final = (
    "done", "failed", "cancelled", "timeout",
    "delivered", "delivered_fallback", "undelivered", "refused", "interrupted",
    "filtered",
)
JOB_KINDS: Final = ("portrait", "preview")

# SQLite only auto-numbers an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
LogId = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Style(Base):
    """A style the catalog has published at some point. Never deleted: presets and history name it."""

    __tablename__ = "styles"

    name: Mapped[str] = mapped_column(String(STYLE_NAME_LENGTH), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    # False once the catalog stops shipping it; presets that name it then fall back.
    enabled: Mapped[bool] = mapped_column(Boolean)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServerStyleSetting(Base):
    """A server's choice to hide (or explicitly show) one published style. No row: shown."""

    __tablename__ = "server_style_settings"

    guild_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    style: Mapped[str] = mapped_column(String(STYLE_NAME_LENGTH), ForeignKey("styles.name"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    set_by: Mapped[int] = mapped_column(Snowflake)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _PresetColumns(columns(RoomOptions)):  # type: ignore[misc]
    """The look a server or a channel pins: a style plus the touches that make portraits match, and
    the room's options (declared in `mmpp.bot.db.options`)."""

    style: Mapped[str] = mapped_column(String(STYLE_NAME_LENGTH), ForeignKey("styles.name"))
    background: Mapped[str | None] = mapped_column(String(TOUCH_LENGTH))
    framing: Mapped[str | None] = mapped_column(String(TOUCH_LENGTH))
    seed_policy: Mapped[str] = mapped_column(String(16))
    # The fixed seed, or the base that per-user seeds derive from; unused for "random".
    seed: Mapped[int | None] = mapped_column(UInt64)
    set_by: Mapped[int] = mapped_column(Snowflake)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _preset_checks() -> tuple[CheckConstraint, ...]:
    return (
        CheckConstraint(_one_of("seed_policy", SEED_POLICIES), name="seed_policy"),
        CheckConstraint("seed_policy = 'random' OR seed IS NOT NULL", name="seed_present"),
    )


class ServerPreset(_PresetColumns, Base):
    __tablename__ = "server_presets"
    __table_args__ = _preset_checks()

    guild_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)


class ChannelOverride(_PresetColumns, Base):
    """A room with its own look; wins over the server preset in that channel only."""

    __tablename__ = "channel_overrides"
    __table_args__ = _preset_checks()

    guild_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)


class GenerationLog(Base):
    """One /profile request: who, where, which style, when, how it ended. Never the images."""

    __tablename__ = "generation_log"
    __table_args__ = (
        CheckConstraint(f"outcome IS NULL OR {_one_of('outcome', OUTCOMES)}", name="outcome"),
        CheckConstraint(_one_of("kind", JOB_KINDS), name="kind"),
        # Quotas count one user's (or one server's) rows since midnight; retention deletes by age.
        Index(None, "user_id", "queued_at"),
        Index(None, "guild_id", "queued_at"),
        Index(None, "queued_at"),
        # A start looks for rows a crash left open.
        Index(None, "finished_at"),
    )

    id: Mapped[int] = mapped_column(LogId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Snowflake)
    guild_id: Mapped[int | None] = mapped_column(Snowflake)  # None: a DM
    channel_id: Mapped[int | None] = mapped_column(Snowflake)
    # No foreign key: history keeps whatever ran, even a style the catalog has since dropped.
    style: Mapped[str] = mapped_column(String(STYLE_NAME_LENGTH))
    seed: Mapped[int | None] = mapped_column(UInt64)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    # A /style preview is logged (and counted) like a portrait, told apart here.
    kind: Mapped[str] = mapped_column(String(16), server_default="portrait")
    # A set of several takes is one row whose cost is its pictures: quotas count pictures.
    pictures: Mapped[int] = mapped_column(Integer, server_default="1")
    # What is needed to tell the member after a crash or restart: the interaction's webhook while
    # its token is valid, else the channel or a DM. The token is erased when the row is closed.
    interaction_id: Mapped[int | None] = mapped_column(Snowflake)
    application_id: Mapped[int | None] = mapped_column(Snowflake)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The member's language (a catalogue's code: "ko", "en"), so a notice sent after the interaction
    # is gone reads in their language. Rows from before it was kept have none: English.
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_LENGTH))


class ServerOptionsRow(columns(ServerOptions), Base):  # type: ignore[misc]
    """A server admin's server-wide options (declared in `mmpp.bot.db.options`). No row: the defaults.
    The table keeps the name it had when it held only the safety check."""

    __tablename__ = "server_safety"

    guild_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    set_by: Mapped[int] = mapped_column(Snowflake)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


def upsert(session: AsyncSession, model: type[Base]) -> Any:
    """INSERT with the session's dialect's ON CONFLICT support (both spell it the same way)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
