"""The generation log as the bot's job table: quota reservations, outcomes, and open jobs.

A /profile (or a /style preview) reserves its row *before* anything slow happens: the count
against today's quotas and the insert run in one transaction that is serialized per member and per
server, so a burst of requests cannot pass the check together. The row stays open (no outcome)
while the job is prepared, waits and runs; it carries what a restart needs to tell the member that
their portrait was not made (never the selfie). Every row is closed exactly once: the first
outcome wins.

What counts against a quota: open rows (reserved, waiting, running), portraits that were made
(delivered or not, or filtered by the safety check: the GPU did the work), and jobs cancelled
after the GPU started on them.
Reservations given back before the GPU was used ("refused"), failures on the bot's side and jobs
a restart interrupted do not count.

Quotas count pictures, not requests: a set of several takes is one row (one request, one place in
line) whose cost is its `pictures`. A member with fewer pictures left today than the set asks for
gets a smaller set (`reserve_set` says how many); with none left, the usual refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import and_, delete, func, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmpp.bot.db.errors import QuotaExceeded
from mmpp.bot.db.models import REASON_LENGTH, GenerationLog
from mmpp.errors import N_

Outcome = Literal[
    "done", "failed", "cancelled", "timeout", "filtered",
    "delivered", "delivered_fallback", "undelivered", "refused", "interrupted",
]
JobKind = Literal["portrait", "preview"]

# The GPU made these portraits, whether or not Discord let the member have them (or the safety
# check let them be posted: "filtered").
_MADE = ("done", "filtered", "delivered", "delivered_fallback", "undelivered")


class Usage(NamedTuple):
    """Pictures counted against today's quotas (UTC day): this user's, and this server's."""

    user: int
    guild: int


@dataclass(frozen=True, slots=True)
class InteractionRef:
    """How to reach the member later without the live interaction object."""

    interaction_id: int
    application_id: int
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A row a previous run (or this one) left open: a member still waiting for an answer."""

    log_id: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    style: str
    kind: str
    started: bool
    interaction: InteractionRef | None
    queued_at: datetime | None = None
    # The catalogue language the member was answered in; None for rows written before it was kept.
    language: str | None = None


def midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _counted() -> Any:
    return or_(
        GenerationLog.outcome.is_(None),
        GenerationLog.outcome.in_(_MADE),
        and_(GenerationLog.outcome == "cancelled", GenerationLog.started_at.is_not(None)),
    )


class JobLog:
    """Mixed into `Repository`; needs its `_sessions`, `_clock` and the two daily quotas."""

    _sessions: async_sessionmaker[AsyncSession]
    _clock: Callable[[], datetime]
    user_daily_quota: int
    server_daily_quota: int
    log_retention_days: int

    # --- reserving and closing ----------------------------------------------------------------

    async def reserve(
        self,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        style: str,
        *,
        kind: JobKind = "portrait",
        seed: int | None = None,
        interaction: InteractionRef | None = None,
        language: str | None = None,
    ) -> int:
        """Check today's quotas and open the job's log row in one serialized transaction; returns
        the row id, or raises `QuotaExceeded`. Give it back with `release` if the job never
        reaches the GPU. `language` (a catalogue's code) is what a notice after a restart speaks."""
        log_id, _ = await self.reserve_set(
            user_id, guild_id, channel_id, style, kind=kind, seed=seed, interaction=interaction, language=language
        )
        return log_id

    async def reserve_set(
        self,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        style: str,
        *,
        pictures: int = 1,
        kind: JobKind = "portrait",
        seed: int | None = None,
        interaction: InteractionRef | None = None,
        language: str | None = None,
    ) -> tuple[int, int]:
        """`reserve` for a set of up to `pictures` takes: (row id, pictures granted), fewer than asked
        where today's quotas have fewer left, never none (then `QuotaExceeded`)."""
        values: dict[str, Any] = {
            "user_id": user_id, "guild_id": guild_id, "channel_id": channel_id, "style": style, "seed": seed,
            "kind": kind, "queued_at": self._clock(), "language": language,
        }
        if interaction is not None:
            values.update(
                interaction_id=interaction.interaction_id, application_id=interaction.application_id,
                interaction_token=interaction.token, token_expires_at=interaction.expires_at,
            )
        async with self._sessions.begin() as session:
            await self._lock_quota(session, user_id, guild_id)
            usage = await self._usage(session, user_id, guild_id)
            self._raise_if_over(usage, guild_id)
            granted = min(pictures, self._left(usage, guild_id))
            stmt = GenerationLog.__table__.insert().values(**values, pictures=granted).returning(GenerationLog.id)
            return (await session.execute(stmt)).scalar_one(), granted

    def _left(self, usage: Usage, guild_id: int | None) -> int:
        """Pictures today's quotas still allow (a large number where neither limits)."""
        left = [self.user_daily_quota - usage.user] if self.user_daily_quota else []
        if self.server_daily_quota and guild_id is not None:
            left.append(self.server_daily_quota - usage.guild)
        return max(1, min(left, default=1_000_000))

    async def release(self, log_id: int, reason: str) -> bool:
        """Give a reservation back: the job was refused before it used the GPU, so it does not count."""
        return await self.log_finished(log_id, "refused", reason)

    async def log_queued(
        self, user_id: int, guild_id: int | None, channel_id: int | None, style: str, seed: int | None = None
    ) -> int:
        """Record a request without a quota check (imports, benchmarks); `reserve` is the bot's way."""
        stmt = (
            GenerationLog.__table__.insert()
            .values(
                user_id=user_id, guild_id=guild_id, channel_id=channel_id, style=style, seed=seed,
                queued_at=self._clock(),
            )
            .returning(GenerationLog.id)
        )
        async with self._sessions.begin() as session:
            return (await session.execute(stmt)).scalar_one()

    async def log_started(self, log_id: int) -> None:
        # Never on a closed row: a late "started" (retried, or racing the end) must not show a
        # finished job as running.
        await self._update_log(
            log_id, and_(GenerationLog.started_at.is_(None), GenerationLog.finished_at.is_(None)),
            started_at=self._clock(),
        )

    async def log_finished(self, log_id: int, outcome: Outcome, reason: str | None = None) -> bool:
        """Close a log row; the first outcome wins (a late "done" after a "timeout" is ignored).
        The interaction token goes with it: a closed job never needs to reach the member again."""
        if outcome not in get_args(Outcome):
            raise ValueError(f"outcome must be one of {get_args(Outcome)}, not {outcome!r}")
        reason = reason[:REASON_LENGTH] if reason else None
        return await self._update_log(
            log_id,
            GenerationLog.finished_at.is_(None),
            finished_at=self._clock(),
            outcome=outcome,
            reason=reason,
            interaction_token=None,
        )

    async def open_jobs(self) -> list[OpenJob]:
        """Rows nobody closed: jobs that were reserved, waiting or running when a run ended."""
        stmt = select(GenerationLog).where(GenerationLog.finished_at.is_(None)).order_by(GenerationLog.id)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        jobs = []
        for row in rows:
            ref = None
            if row.interaction_token and row.interaction_id and row.application_id and row.token_expires_at:
                ref = InteractionRef(row.interaction_id, row.application_id, row.interaction_token,
                                     row.token_expires_at)
            jobs.append(OpenJob(row.id, row.user_id, row.guild_id, row.channel_id, row.style, row.kind,
                                row.started_at is not None, ref, row.queued_at, row.language))
        return jobs

    async def purge_log(self, older_than_days: int | None = None) -> int:
        """Delete log rows queued more than N days ago (default: the retention setting)."""
        days = self.log_retention_days if older_than_days is None else older_than_days
        if days < 1:
            raise ValueError("keep at least one day of log: today's rows are what quotas count")
        cutoff = self._clock() - timedelta(days=days)
        stmt = delete(GenerationLog).where(GenerationLog.queued_at < cutoff)
        async with self._sessions.begin() as session:
            result = await session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- quotas -------------------------------------------------------------------------------

    async def usage_today(self, user_id: int, guild_id: int | None) -> Usage:
        """Portraits since 00:00 UTC that count (see the module's docstring)."""
        async with self._sessions() as session:
            return await self._usage(session, user_id, guild_id)

    async def check_quota(self, user_id: int, guild_id: int | None) -> Usage:
        """Raise `QuotaExceeded` if this user or this server has used today's portraits (a read-only
        look; `reserve` is what holds under a burst)."""
        if not self.user_daily_quota and not (self.server_daily_quota and guild_id is not None):
            return Usage(0, 0)
        usage = await self.usage_today(user_id, guild_id)
        self._raise_if_over(usage, guild_id)
        return usage

    async def _usage(self, session: AsyncSession, user_id: int, guild_id: int | None) -> Usage:
        since = midnight(self._clock())

        def today(where: Any) -> Any:
            return (
                select(func.coalesce(func.sum(GenerationLog.pictures), 0))
                .select_from(GenerationLog)
                .where(where, GenerationLog.queued_at >= since, _counted())
                .scalar_subquery()
            )

        user_count = today(GenerationLog.user_id == user_id)
        guild_count = today(GenerationLog.guild_id == guild_id) if guild_id is not None else literal(0)
        row = (await session.execute(select(user_count, guild_count))).one()
        return Usage(int(row[0]), int(row[1]))

    def _raise_if_over(self, usage: Usage, guild_id: int | None) -> None:
        user_limit = self.user_daily_quota
        guild_limit = self.server_daily_quota if guild_id is not None else 0
        now = self._clock()
        resets_at = midnight(now) + timedelta(days=1)
        # A Discord timestamp: each member's client shows it in their own language and time zone.
        when = f"<t:{int(resets_at.timestamp())}:R>"
        if user_limit and usage.user >= user_limit:
            raise QuotaExceeded(
                N_("You have made {used} portraits today, the daily limit of {limit}. You can make more {when}."),
                scope="user", limit=user_limit, used=usage.user, resets_at=resets_at, when=when,
            )
        if guild_limit and usage.guild >= guild_limit:
            raise QuotaExceeded(
                N_("This server has made its {limit} portraits for today. Members can make more {when}."),
                scope="server", limit=guild_limit, used=usage.guild, resets_at=resets_at, when=when,
            )

    @staticmethod
    async def _lock_quota(session: AsyncSession, user_id: int, guild_id: int | None) -> None:
        """Serialize reservations of one member and of one server until the transaction ends.

        SQLite: BEGIN IMMEDIATE takes the database's write lock before the count, so a second
        reservation waits (busy timeout) and then counts the first one's row. PostgreSQL:
        transaction-scoped advisory locks, the server's before the member's on every path, so two
        reservations can never wait on each other in a cycle.
        """
        if session.get_bind().dialect.name == "sqlite":
            # pysqlite has not begun a transaction yet (it only does so before DML), so this is
            # the transaction's BEGIN; its COMMIT comes from the session as usual.
            await session.execute(text("BEGIN IMMEDIATE"))
            return
        keys = ([f"mmpp:quota:guild:{guild_id}"] if guild_id is not None else []) + [f"mmpp:quota:user:{user_id}"]
        for key in keys:
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})

    async def _update_log(self, log_id: int, unset: Any, **values: Any) -> bool:
        stmt = (
            update(GenerationLog)
            .where(GenerationLog.id == log_id, unset)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]
