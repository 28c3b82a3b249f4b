"""The bot with QUEUE_BACKEND=redis and real `mmpp worker` subprocesses, through the Discord stand-in.

One cluster per module (workers take seconds to load): a private Redis the tests may restart, the
bot in this process, and two worker processes each limited to one CPU thread.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.bot.services import Services
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.dispatch import RemoteSlot
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.inference.testing.tiny_model import add_tiny_style
from tests.bot.conftest import bot_settings
from tests.discord_standin import BotAction, FakeGuild, FakeMember, FakeUser, InteractionRecord, StandIn
from tests.redis_server import QUEUE_SECRET, RedisProcess, need_redis_server, worker_process

SLOW_STEPS = 60


@dataclass
class Cluster:
    standin: StandIn
    runtime: BotRuntime
    redis: RedisProcess
    model_dir: Path
    workdir: Path
    guilds: list[FakeGuild]
    members: list[FakeMember]  # ten per server
    dm_user: FakeUser
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def services(self) -> Services:
        assert self.runtime.services is not None
        return self.runtime.services

    def start_worker(self, name: str, *, clock_offset_s: float = 0.0, **env_lines: str) -> None:
        """`mmpp worker` in its own process. `clock_offset_s`: the process's wall clock
        (`time.time`, which arq and the worker read) is that far off, as on a machine whose clock
        is wrong; its monotonic clock is untouched, as there."""
        self.workers[name] = worker_process(
            self.model_dir, self.workdir, name, redis_url=self.redis.url, log=self.workdir / f"{name}.log",
            clock_offset_s=clock_offset_s,
            **{"PREVIEW_EVERY": "2", "MAX_BATCH_SIZE": "4", "LOG_LEVEL": "INFO", **env_lines},
        )

    def stop_worker(self, name: str) -> None:
        process = self.workers.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def worker_log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def ready_workers(self) -> set[str]:
        """Workers that take work now: a slot in the queue *and* a live heartbeat. A slot alone is
        not enough: after a Redis restart a busy slot of a worker the bot has lost stays in the
        queue until its batch is settled, then leaves."""
        return {r.worker_id for r in self.services.queue._crew.runners
                if isinstance(r, RemoteSlot) and r.backend.takes_work(r.worker_id)}

    async def wait_workers(self, *names: str, timeout: float = 180) -> None:
        async with asyncio.timeout(timeout):
            while not set(names) <= self.ready_workers():
                for name in names:
                    process = self.workers.get(name)
                    if process is not None and process.poll() is not None:
                        raise AssertionError(f"worker {name} exited: {self.worker_log(name)[-2000:]}")
                await asyncio.sleep(0.1)

    def heartbeats(self) -> dict[str, dict]:
        """Each worker's heartbeat as the bot reads it (verified with the secret)."""
        client = redis.Redis.from_url(self.redis.url)
        seal = Seal(QUEUE_SECRET)
        try:
            beats = {k.decode().removeprefix(t.WORKER_PREFIX): client.get(k)
                     for k in client.scan_iter(match=t.WORKER_PREFIX + "*")}
            return {name: seal.verify("heartbeat", raw) for name, raw in beats.items() if raw is not None}
        finally:
            client.close()

    def leftovers(self) -> list[str]:
        client = redis.Redis.from_url(self.redis.url)
        try:
            return [
                k.decode() for pattern in ("mmpp:ev:*", "mmpp:png:*", "mmpp:batch:*", "arq:job:*")
                for k in client.scan_iter(match=pattern)
            ]
        finally:
            client.close()

    def stop_workers(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def profile(cluster: Cluster, user: FakeMember | FakeUser, selfie: bytes, **options: object) -> InteractionRecord:
    return await cluster.standin.send_slash_command(
        "profile", options or None, user=user, attachments={"selfie": ("me.jpg", selfie)}
    )


def is_answer(action: BotAction) -> bool:
    """A portrait (a file with its buttons) or a message that tells the member what happened: every
    reply is private now, so a progress edit (place in line, steps) is not an answer."""
    progress = (action.content or "").startswith(("⏳", "🎨"))
    portrait = action.has_files and bool(action.components)
    return portrait or (action.ephemeral and bool(action.content) and not progress)


@pytest.fixture(scope="module")
def scale_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("scale-model") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    # Long enough that a test can act while a worker draws it.
    add_tiny_style(model_dir, "slow-style", seed=3, steps=SLOW_STEPS)
    return model_dir


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(scale_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    need_redis_server()
    workdir = tmp_path_factory.mktemp("cluster")
    server = RedisProcess(password="cluster-pw-42")
    server.start()
    async with StandIn() as standin:
        guilds = [standin.add_guild(f"Club {n}") for n in range(4)]
        members = [
            standin.add_member(g, standin.add_user(f"g{gi}m{i}")) for gi, g in enumerate(guilds) for i in range(10)
        ]
        dm_user = standin.add_user("dm")
        settings = bot_settings(
            standin, scale_model_dir, workdir, queue_backend="redis", redis_url=server.url, max_batch_size=4,
            queue_capacity=100, user_daily_quota=100, server_daily_quota=1000, queue_secret=QUEUE_SECRET,
        )
        runtime = BotRuntime(settings, shutdown_grace_s=5.0, client_options={"guild_ready_timeout": 0.05})
        world = Cluster(standin, runtime, server, scale_model_dir, workdir, guilds, members, dm_user)
        try:
            await runtime.start()
            await runtime.wait_ready(timeout=30)
            await standin.wait_for_commands("profile", "cancel")
            # The clubs let members pick (an unconfigured server gives one look): tests ask for slow-style.
            for guild in guilds:
                await world.services.repo.set_server_preset(
                    guild.id, settings.default_style, allow_member_choice=True, set_by=members[0].id
                )
            world.start_worker("wA")
            world.start_worker("wB")
            await world.wait_workers("wA", "wB")
            yield world
        finally:
            world.stop_workers()
            await runtime.stop()
            reset_endpoints()
            server.stop()
