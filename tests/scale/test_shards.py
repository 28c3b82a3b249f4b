"""Gateway shards: AutoShardedBot's own count, and two bot processes that each own a shard and share
the GPU workers through Redis. The stand-in routes each guild to shard `(guild_id >> 22) % count`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.bot.app.sharding import ShardsInvalid, parse_shard_ids, shard_options
from mmpp.bot.db import Repository
from mmpp.bot.db.database import Database
from mmpp.inference.engine import Engine
from mmpp.inference.queue.remote.protocol import catalog_fingerprint
from mmpp.inference.queue.remote.worker import RemoteWorker
from mmpp.settings import Settings, load_settings
from tests.bot.conftest import bot_settings
from tests.discord_standin import FakeGuild, FakeMember, StandIn
from tests.redis_server import QUEUE_SECRET, SHARED, flush, need_redis
from tests.scale.conftest import profile


def guilds_on_both_shards(standin: StandIn) -> list[FakeGuild]:
    """One guild per shard of two (guild ids carry a millisecond clock, so wait for the other parity)."""
    found: dict[int, FakeGuild] = {}
    for n in range(200):
        guild = standin.add_guild(f"Server {n}")
        found.setdefault((guild.id >> 22) % 2, guild)
        if len(found) == 2:
            return [found[0], found[1]]
        time.sleep(0.002)
    raise AssertionError("no guild landed on the second shard")


def test_shard_settings() -> None:
    base = load_settings(None)
    assert shard_options(base) == {}
    assert parse_shard_ids("0-3, 6") == [0, 1, 2, 3, 6]
    redis = base.model_copy(update={"queue_backend": "redis", "shard_count": 8})
    assert shard_options(redis.model_copy(update={"shard_ids": "4-7"})) == {"shard_count": 8, "shard_ids": [4, 5, 6, 7]}
    for wrong, words in (
        ({"shard_count": None, "shard_ids": "0"}, "needs SHARD_COUNT"),
        ({"shard_ids": "6-9"}, "from 0 to 7"),
        ({"shard_ids": "x"}, "'x'"),
        ({"shard_ids": "0-3", "queue_backend": "local"}, "QUEUE_BACKEND=redis"),
    ):
        with pytest.raises(ShardsInvalid, match=words):
            shard_options(redis.model_copy(update=wrong))


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[BotRuntime]:
    runtime = BotRuntime(settings, shutdown_grace_s=5.0, client_options={"guild_ready_timeout": 0.05})
    try:
        await runtime.start()
        await runtime.wait_ready(timeout=30)
        yield runtime
    finally:
        await runtime.stop()


async def test_with_no_shard_settings_the_bot_runs_discords_count(
    scale_model_dir: Path, tmp_path: Path, selfie_bytes: bytes
) -> None:
    async with StandIn(shard_count=2) as standin:
        guilds = guilds_on_both_shards(standin)
        members = [standin.add_member(g, standin.add_user(f"on-shard-{i}")) for i, g in enumerate(guilds)]
        try:
            async with running(bot_settings(standin, scale_model_dir, tmp_path)) as runtime:
                await standin.wait_for_commands("profile")
                assert runtime.bot is not None and runtime.bot.shard_count == 2
                assert sorted(s.shard for s in standin.gateway.live_sessions()) == [(0, 2), (1, 2)]
                interactions = [await profile(standin_world(standin), m, selfie_bytes) for m in members]
                await asyncio.gather(*(i.wait_for_final_file(timeout=60) for i in interactions))
        finally:
            reset_endpoints()


async def test_two_bot_processes_each_own_a_shard_and_share_the_workers(
    scale_model_dir: Path, tmp_path: Path, selfie_bytes: bytes
) -> None:
    need_redis()
    flush(SHARED)
    engine = Engine.from_settings(load_settings(None, model_dir=scale_model_dir, device="cpu", dtype="float32"))
    async with StandIn(shard_count=2) as standin:
        guilds = guilds_on_both_shards(standin)
        members: list[FakeMember] = [
            standin.add_member(g, standin.add_user(f"member-on-shard-{i}")) for i, g in enumerate(guilds)
        ]
        common = {"queue_backend": "redis", "redis_url": SHARED, "shard_count": 2, "queue_secret": QUEUE_SECRET}
        first = bot_settings(standin, scale_model_dir, tmp_path, shard_ids="0", **common)
        second = bot_settings(standin, scale_model_dir, tmp_path, shard_ids="1", **common)
        worker_settings = first.model_copy(update={"redis_url": SecretStr(SHARED)})
        worker = RemoteWorker(engine, worker_settings, "shared", catalog_fingerprint(engine.catalog, engine.resolution))
        stop = asyncio.Event()
        serving: asyncio.Task[None] | None = None
        try:
            async with running(first) as one, running(second) as two:
                serving = asyncio.create_task(worker.serve(stop))
                await standin.wait_for_commands("profile")
                assert sorted(s.shard for s in standin.gateway.live_sessions()) == [(0, 2), (1, 2)]
                # A worker that started after the bots is seen at their next scan; a request before that
                # is rightly told no GPU is drawing, which is not what this test is about.
                async with asyncio.timeout(30):
                    while any(r.services is None or r.services.queue.workers == 0 for r in (one, two)):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                interactions = []
                for member in members:  # one at a time: two bots and a worker share this process's loop
                    interactions.append(await profile(standin_world(standin), member, selfie_bytes))
                    await interactions[-1].wait_for_callback(timeout=10)
                finals = await asyncio.gather(*(i.wait_for_final_file(timeout=120) for i in interactions))
                assert len(finals) == 2
                # Each process sees only its own shard's servers and drew for them, both through the one worker.
                for shard, (runtime, guild) in enumerate(((one, guilds[0]), (two, guilds[1]))):
                    assert runtime.bot is not None and guild.id in {g.id for g in runtime.bot.guilds}
                    assert {(g.id >> 22) % 2 for g in runtime.bot.guilds} == {shard}
                    assert runtime.services is not None and runtime.services.queue.seconds_per_job > 0
        finally:
            stop.set()
            if serving is not None:
                await asyncio.wait_for(serving, 30)
            reset_endpoints()
            flush(SHARED)


def standin_world(standin: StandIn) -> object:
    """`profile` wants something with a `standin`; these tests have no Cluster."""
    return type("World", (), {"standin": standin})()


async def posts_to(standin: StandIn, member: FakeMember, timeout: float = 30.0) -> list[str]:
    """What was posted in channels mentioning `member`, once there is something."""
    async with asyncio.timeout(timeout):
        while not (posts := mentions(standin, member)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return posts


def mentions(standin: StandIn, member: FakeMember) -> list[str]:
    return [m.content for m in standin.channel_messages if f"<@{member.user.id}>" in m.content]


async def open_log_ids(settings: Settings) -> list[int]:
    database = Database.from_settings(settings)
    try:
        await database.upgrade_to_head()
        return [job.log_id for job in await Repository.from_settings(database, settings).open_jobs()]
    finally:
        await database.dispose()


async def test_a_restarted_shard_process_answers_only_for_its_own_servers(
    scale_model_dir: Path, tmp_path: Path
) -> None:
    """Two shard processes share one database. When one restarts it tells the members whose jobs
    its own last run left open, and leaves the other process's jobs alone: those members' portraits
    may still be on their way."""
    need_redis()
    flush(SHARED)
    async with StandIn(shard_count=2) as standin:
        guilds = guilds_on_both_shards(standin)
        members = [standin.add_member(g, standin.add_user(f"left-open-{i}")) for i, g in enumerate(guilds)]
        common = {"queue_backend": "redis", "redis_url": SHARED, "shard_count": 2, "queue_secret": QUEUE_SECRET}
        shard0, shard1 = (bot_settings(standin, scale_model_dir, tmp_path, shard_ids=str(i), **common) for i in (0, 1))
        # A job on each shard's server, open in the shared database (as a kill -9 of both leaves them).
        database = Database.from_settings(shard0)
        try:
            await database.upgrade_to_head()
            repo = Repository.from_settings(database, shard0)
            on_shard0, on_shard1 = [
                await repo.reserve(m.user.id, g.id, next(iter(g.channels)), "tiny-style")
                for m, g in zip(members, guilds, strict=True)
            ]
        finally:
            await database.dispose()
        try:
            async with running(shard1):
                [notice] = await posts_to(standin, members[1])
                assert "I restarted before your portrait was finished" in notice
                async with asyncio.timeout(10):
                    while on_shard1 in await open_log_ids(shard1):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            # Shard 0's member heard nothing from shard 1's process, and their job is still open.
            assert not mentions(standin, members[0])
            assert await open_log_ids(shard0) == [on_shard0]
            async with running(shard0):
                [notice] = await posts_to(standin, members[0])
                assert "I restarted" in notice
            assert await open_log_ids(shard0) == []
        finally:
            reset_endpoints()
            flush(SHARED)
