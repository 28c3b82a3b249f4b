"""Quota reservations under a burst, what counts, and the open jobs a restart finds (both backends)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select

from mmpp.bot.db.database import Database
from mmpp.bot.db.errors import QuotaExceeded
from mmpp.bot.db.job_log import InteractionRef
from mmpp.bot.db.models import GenerationLog
from mmpp.bot.db.repository import Repository
from tests.db.conftest import STYLES, Clock, make_repository

GUILD = 900_000_000_000_000_001
CHANNEL = 800_000_000_000_000_001


@pytest_asyncio.fixture(loop_scope="function")
async def quota_repo(database: Database, clock: Clock) -> Repository:
    repo = make_repository(database, clock, user_daily_quota=2, server_daily_quota=10)
    await repo.sync_styles(STYLES)
    return repo


async def _outcomes(repo: Repository, database: Database) -> list[str | None]:
    async with database.sessions() as session:
        return list((await session.scalars(select(GenerationLog.outcome).order_by(GenerationLog.id))).all())


async def test_thirty_members_at_once_get_exactly_the_servers_ten(quota_repo: Repository) -> None:
    async def one(user_id: int) -> bool:
        try:
            await quota_repo.reserve(user_id, GUILD, CHANNEL, "pixar")
        except QuotaExceeded as exc:
            assert exc.scope == "server"
            return False
        return True

    results = await asyncio.gather(*(one(10_000 + i) for i in range(30)))
    assert sum(results) == 10
    assert await quota_repo.usage_today(10_000, GUILD) == (1 if results[0] else 0, 10)


async def test_one_member_bursting_gets_only_their_own_quota(quota_repo: Repository) -> None:
    results = await asyncio.gather(
        *(quota_repo.reserve(42, GUILD, CHANNEL, "pixar") for _ in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, int) for r in results) == 2
    assert all(isinstance(r, QuotaExceeded) and r.scope == "user" for r in results if not isinstance(r, int))


async def test_a_released_reservation_does_not_count_but_gpu_work_does(
    quota_repo: Repository, database: Database
) -> None:
    refused = await quota_repo.reserve(1, GUILD, CHANNEL, "pixar")
    assert await quota_repo.release(refused, "no face") is True
    assert await quota_repo.usage_today(1, GUILD) == (0, 0)

    # Cancelled after the GPU started on it: it used the GPU, so it counts.
    cancelled = await quota_repo.reserve(1, GUILD, CHANNEL, "pixar")
    await quota_repo.log_started(cancelled)
    await quota_repo.log_finished(cancelled, "cancelled", "reply deleted")
    # Made, but Discord never let the member have it: still GPU work.
    undelivered = await quota_repo.reserve(2, GUILD, CHANNEL, "pixar", kind="preview")
    await quota_repo.log_started(undelivered)
    await quota_repo.log_finished(undelivered, "undelivered")
    # Interrupted by a restart: the member got nothing and is told so; it does not count.
    interrupted = await quota_repo.reserve(2, GUILD, CHANNEL, "pixar")
    await quota_repo.log_started(interrupted)
    await quota_repo.log_finished(interrupted, "interrupted", "restart")
    assert await quota_repo.usage_today(1, GUILD) == (1, 2)
    assert await quota_repo.usage_today(2, GUILD) == (1, 2)
    with pytest.raises(QuotaExceeded):
        await quota_repo.reserve(1, None, None, "pixar")
        await quota_repo.reserve(1, None, None, "pixar")
    assert await _outcomes(quota_repo, database) == ["refused", "cancelled", "undelivered", "interrupted", None]


async def test_open_jobs_carry_the_interaction_and_closing_erases_the_token(
    quota_repo: Repository, clock: Clock, database: Database
) -> None:
    ref = InteractionRef(1234, 5678, "secret-token", clock.now + timedelta(minutes=15))
    running = await quota_repo.reserve(7, GUILD, CHANNEL, "noir", interaction=ref)
    await quota_repo.log_started(running)
    waiting = await quota_repo.reserve(8, None, 99, "anime", kind="preview")
    closed = await quota_repo.reserve(9, GUILD, CHANNEL, "noir", interaction=ref)
    await quota_repo.log_finished(closed, "delivered")

    jobs = await quota_repo.open_jobs()
    assert [(j.log_id, j.user_id, j.guild_id, j.channel_id, j.kind, j.started) for j in jobs] == [
        (running, 7, GUILD, CHANNEL, "portrait", True),
        (waiting, 8, None, 99, "preview", False),
    ]
    assert jobs[0].interaction == ref and jobs[1].interaction is None
    async with database.sessions() as session:
        tokens = (await session.scalars(select(GenerationLog.interaction_token).order_by(GenerationLog.id))).all()
    assert tokens == ["secret-token", None, None]

    assert await quota_repo.log_finished(running, "interrupted") is True
    assert await quota_repo.log_finished(running, "delivered") is False  # the first close wins
    assert [j.log_id for j in await quota_repo.open_jobs()] == [waiting]


async def test_a_set_is_one_request_whose_cost_is_its_pictures(quota_repo: Repository) -> None:
    # The member's quota is 2 pictures: a set of 2 uses it all, the next request is refused.
    log_id, granted = await quota_repo.reserve_set(7, GUILD, CHANNEL, "pixar", pictures=2)
    assert granted == 2
    assert await quota_repo.usage_today(7, GUILD) == (2, 2)
    with pytest.raises(QuotaExceeded):
        await quota_repo.reserve_set(7, GUILD, CHANNEL, "pixar", pictures=2)
    # Given back before the GPU, the set does not count: its pictures are free again.
    await quota_repo.release(log_id, "no face")
    assert await quota_repo.usage_today(7, GUILD) == (0, 0)
    await quota_repo.reserve(7, GUILD, CHANNEL, "pixar")
    # One picture left today: a set of four shrinks to one take instead of being refused.
    assert (await quota_repo.reserve_set(7, GUILD, CHANNEL, "pixar", pictures=4))[1] == 1
    assert await quota_repo.usage_today(7, GUILD) == (2, 2)
