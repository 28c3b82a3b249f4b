"""The real bot (real discord.py client, tiny model, SQLite file) against the Discord stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.bot.db.models import GenerationLog
from mmpp.bot.services import Services
from mmpp.inference.engine import Engine
from mmpp.inference.queue import GenerationQueue
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.inference.testing.tiny_model import add_tiny_style
from mmpp.settings import Settings, load_settings
from tests.discord_standin import MANAGE_GUILD, FakeGuild, FakeMember, FakeUser, StandIn
from tests.redis_server import QUEUE_SECRET, SHARED, flush, need_redis


@dataclass
class World:
    standin: StandIn
    runtime: BotRuntime
    guild: FakeGuild
    admin: FakeMember
    members: list[FakeMember]
    dm_user: FakeUser
    settings: Settings

    @property
    def services(self) -> Services:
        assert self.runtime.services is not None
        return self.runtime.services

    @property
    def recorder(self) -> RecordingEngine:
        """The recorder around the bot's own engine (QUEUE_BACKEND=local): every call still draws."""
        queue = self.services.queue
        assert isinstance(queue, GenerationQueue) and isinstance(queue.preparer, RecordingEngine)
        return queue.preparer

    @property
    def engine(self) -> Engine:
        """The bot's own engine (QUEUE_BACKEND=local): the one that draws and prepares faces."""
        return self.recorder.engine


async def closed_log_rows(world: World, n: int, timeout: float = 20.0) -> list[GenerationLog]:
    """The log rows once `n` of them are closed. The bot closes a row after Discord answered its
    last request, which can be a moment after the stand-in recorded that request."""
    async with asyncio.timeout(timeout):
        while True:
            async with world.services.database.sessions() as session:
                rows = list((await session.scalars(select(GenerationLog).order_by(GenerationLog.id))).all())
            if sum(r.outcome is not None for r in rows) >= n:
                return rows
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def bot_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a second style, so "which style ran" is a real question."""
    model_dir = tmp_path_factory.mktemp("bot-model") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    add_tiny_style(model_dir, "other-style", seed=42, display_name="Other Style")
    return model_dir


def bot_settings(standin: StandIn, model_dir: Path, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "discord_token": standin.token,
        "discord_api_base": standin.api_base,
        "discord_gateway_url": standin.gateway_url,
        "discord_cdn_base": standin.cdn_base,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'mmpp.sqlite3'}",
        "model_dir": model_dir,
        "device": "cpu",
        "dtype": "float32",
        "default_style": "tiny-style",
        "progress_edit_interval_s": 0.0,
        "preview_every": 2,
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    """Override in a test module to change the bot's settings."""
    return {}


def recorded(engine: Engine) -> RecordingEngine:
    """What the bot's runtime puts around each engine it loads (the tests' and `bench/bot.py`'s). The
    device passes through, so the queue and its workers see the same device as without the recorder."""
    return RecordingEngine(engine, device=str(engine.device))


@pytest.fixture
def engine_gate(world: World) -> Iterator[RecordingEngine]:
    """The bot's engine recorder with its gate held: the engine's next calls wait (a job stays
    "drawing") until `release()`, so tests can line jobs up deterministically."""
    recorder = world.recorder
    recorder.hold(timeout_s=60)
    yield recorder
    recorder.release()


@pytest.fixture
def queue_backend() -> str:
    """Override in a test module to run its tests with QUEUE_BACKEND=redis (see test_redis_backend.py)."""
    return "local"


@contextlib.asynccontextmanager
async def remote_worker(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[None]:
    """With QUEUE_BACKEND=redis: one worker in this process, on the session's engine, until the end."""
    if settings.queue_backend != "redis":
        yield
        return
    from mmpp.inference.queue.remote.protocol import catalog_fingerprint
    from mmpp.inference.queue.remote.worker import RemoteWorker

    engine = request.getfixturevalue("bot_engine")
    worker = RemoteWorker(engine, settings, "bot-tests", catalog_fingerprint(engine.catalog, engine.resolution))
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


@pytest.fixture(scope="session")
def bot_engine(bot_model_dir: Path) -> Engine:
    return Engine.from_settings(load_settings(None, model_dir=bot_model_dir, device="cpu", dtype="float32"))


@pytest_asyncio.fixture(loop_scope="function")
async def world(
    bot_model_dir: Path, tmp_path: Path, bot_overrides: dict[str, object], queue_backend: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[World]:
    if queue_backend == "redis":
        need_redis()
        flush(SHARED)
        bot_overrides = {**bot_overrides, "queue_backend": "redis", "redis_url": SHARED, "queue_secret": QUEUE_SECRET}
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        admins = standin.add_role(guild, "Admins", permissions=MANAGE_GUILD)
        admin = standin.add_member(guild, standin.add_user("ada"), roles=[admins])
        members = [standin.add_member(guild, standin.add_user(f"member{i}")) for i in range(3)]
        dm_user = standin.add_user("cy")
        settings = bot_settings(standin, bot_model_dir, tmp_path, **bot_overrides)
        runtime = BotRuntime(settings, shutdown_grace_s=5.0, client_options={"guild_ready_timeout": 0.05},
                             wrap_engine=recorded)
        try:
            await runtime.start()
            async with remote_worker(request, runtime.settings):
                await runtime.wait_ready(timeout=30)
                await standin.wait_for_commands("profile", "style", "queue", "cancel")
                if queue_backend == "redis":
                    async with asyncio.timeout(10):
                        while runtime.services is None or runtime.services.queue.workers == 0:  # noqa: ASYNC110
                            await asyncio.sleep(0.05)
                yield World(standin, runtime, guild, admin, members, dm_user, settings)
                await runtime.stop()  # before the worker goes, so jobs still running can finish
        finally:
            await runtime.stop()
            reset_endpoints()
            if queue_backend == "redis":
                flush(SHARED)
        assert not standin.unknown_routes, standin.unknown_routes
        assert not standin.server_errors, standin.server_errors
