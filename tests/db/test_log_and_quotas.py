"""The generation log, the daily quotas counted from it, and retention."""

from __future__ import annotations

from datetime import UTC

import pytest
import pytest_asyncio
from sqlalchemy import select

from mmpp.bot.db.database import Database
from mmpp.bot.db.errors import QuotaExceeded
from mmpp.bot.db.models import GenerationLog
from mmpp.bot.db.repository import Repository
from tests.db.conftest import STYLES, Clock, make_repository

ALICE, BOB, CAROL = 10_001, 10_002, 10_003
GUILD, OTHER_GUILD = 900_000_000_000_000_001, 900_000_000_000_000_002
CHANNEL = 800_000_000_000_000_001


@pytest_asyncio.fixture(loop_scope="function")
async def timed_repo(database: Database, clock: Clock) -> Repository:
    repo = make_repository(database, clock, user_daily_quota=3, server_daily_quota=5, log_retention_days=30)
    await repo.sync_styles(STYLES)
    return repo


async def _log_row(database: Database, log_id: int) -> GenerationLog:
    async with database.sessions() as session:
        row = await session.scalar(select(GenerationLog).where(GenerationLog.id == log_id))
    assert row is not None
    return row


async def test_a_job_is_logged_from_queue_to_outcome(database: Database, timed_repo: Repository, clock: Clock) -> None:
    log_id = await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", seed=1234)
    clock.advance(seconds=2)
    await timed_repo.log_started(log_id)
    clock.advance(seconds=20)
    assert await timed_repo.log_finished(log_id, "failed", "no face found " * 40) is True
    # A late second outcome (say the deadline firing) does not overwrite the first.
    assert await timed_repo.log_finished(log_id, "timeout") is False

    row = await _log_row(database, log_id)
    assert (row.user_id, row.guild_id, row.channel_id, row.style, row.seed) == (ALICE, GUILD, CHANNEL, "pixar", 1234)
    assert row.outcome == "failed" and row.reason is not None and len(row.reason) == 200
    assert row.queued_at.tzinfo is UTC
    assert (row.started_at - row.queued_at).total_seconds() == 2  # type: ignore[operator]
    assert (row.finished_at - row.queued_at).total_seconds() == 22  # type: ignore[operator]

    with pytest.raises(ValueError, match="outcome"):
        await timed_repo.log_finished(log_id, "exploded")  # type: ignore[arg-type]


async def test_quotas_count_today_and_spare_failures(timed_repo: Repository, clock: Clock) -> None:
    done = await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None)
    await timed_repo.log_finished(done, "done")
    failed = await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None)
    await timed_repo.log_finished(failed, "failed", "no face")
    await timed_repo.log_queued(ALICE, None, None, "anime", None)  # in a DM, still running
    await timed_repo.log_queued(BOB, GUILD, CHANNEL, "pixar", None)

    assert await timed_repo.usage_today(ALICE, GUILD) == (2, 2)
    assert await timed_repo.usage_today(ALICE, None) == (2, 0)
    assert await timed_repo.usage_today(BOB, OTHER_GUILD) == (1, 0)

    await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None)  # Alice's third
    with pytest.raises(QuotaExceeded) as refused:
        await timed_repo.check_quota(ALICE, GUILD)
    assert refused.value.scope == "user" and refused.value.code == "quota_user"
    assert "daily limit of 3" in refused.value.message
    # Midnight UTC as a Discord timestamp, which each client words in its own language and time zone.
    assert f"<t:{int(refused.value.resets_at.timestamp())}:R>" in refused.value.message
    assert refused.value.resets_at.hour == 0 and refused.value.resets_at > clock.now

    # Carol fills the server's five (Alice's two done or running, Bob's one, Carol's two).
    await timed_repo.check_quota(BOB, GUILD)
    await timed_repo.log_queued(CAROL, GUILD, CHANNEL, "pixar", None)
    await timed_repo.check_quota(CAROL, GUILD)
    await timed_repo.log_queued(CAROL, GUILD, CHANNEL, "pixar", None)
    with pytest.raises(QuotaExceeded) as server_full:
        await timed_repo.check_quota(BOB, GUILD)
    assert server_full.value.scope == "server" and "This server" in server_full.value.message
    # ...which does not stop Bob in his DMs.
    assert await timed_repo.check_quota(BOB, None) == (1, 0)

    clock.advance(hours=12)  # midnight UTC: a new day
    assert await timed_repo.check_quota(ALICE, GUILD) == (0, 0)


async def test_zero_means_unlimited(database: Database) -> None:
    repo = make_repository(database, user_daily_quota=0, server_daily_quota=0)
    for _ in range(5):
        await repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None)
    assert await repo.check_quota(ALICE, GUILD) == (0, 0)
    assert await repo.usage_today(ALICE, GUILD) == (5, 5)


async def test_retention_purges_old_rows_only(database: Database, timed_repo: Repository, clock: Clock) -> None:
    old = [await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None) for _ in range(3)]
    clock.advance(days=29)
    recent = await timed_repo.log_queued(ALICE, GUILD, CHANNEL, "pixar", None)
    clock.advance(days=2)

    assert await timed_repo.purge_log() == 3  # the 30-day retention setting
    assert await timed_repo.purge_log() == 0
    assert (await _log_row(database, recent)).id == recent
    async with database.sessions() as session:
        left = (await session.scalars(select(GenerationLog.id))).all()
    assert left == [recent] and not set(old) & set(left)

    assert await timed_repo.purge_log(older_than_days=1) == 1
    with pytest.raises(ValueError):
        await timed_repo.purge_log(older_than_days=0)


async def test_a_late_started_write_never_shows_a_finished_job_as_running(
    database: Database, timed_repo: Repository
) -> None:
    # The "started" write retried (or racing the end) lands after the job was closed.
    log_id = await timed_repo.log_queued(BOB, GUILD, CHANNEL, "pixar")
    assert await timed_repo.log_finished(log_id, "cancelled") is True
    await timed_repo.log_started(log_id)
    row = await _log_row(database, log_id)
    assert row.started_at is None and row.outcome == "cancelled"
    assert await timed_repo.usage_today(BOB, GUILD) == (0, 0)  # a cancel before the GPU started does not count
