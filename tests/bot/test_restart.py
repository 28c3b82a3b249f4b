"""Restarts with memory: `mmpp bot` killed with -9 mid-job, or stopped with SIGTERM mid-job; the
member is told their portrait was not made and the log row is closed so it does not count."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.inference.testing.tiny_model import add_tiny_style
from tests.bot.conftest import bot_settings
from tests.discord_standin import FakeMember, InteractionRecord, StandIn
from tests.discord_standin.harness import mmpp_bot_process


@pytest.fixture(scope="module")
def slow_model_dir(bot_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a style of many steps, so a job is surely still running when the bot dies."""
    model_dir = tmp_path_factory.mktemp("slow-model") / "model"
    shutil.copytree(bot_model_dir, model_dir)
    add_tiny_style(model_dir, "slow-style", seed=7, steps=150)
    return model_dir


def sql(tmp_path: Path, statement: str) -> list[tuple[object, ...]]:
    """A statement on the bot's own SQLite file, as another process (the operator's shell) would run it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'mmpp.sqlite3'}")
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def log_rows(tmp_path: Path) -> list[tuple[str | None, str | None]]:
    return sql(tmp_path, "select outcome, interaction_token from generation_log")  # type: ignore[return-value]


@asynccontextmanager
async def mmpp_bot(standin: StandIn, tmp_path: Path, model_dir: Path, **env_lines: str) -> AsyncIterator[
    asyncio.subprocess.Process
]:
    """`mmpp bot` on the slow style, with previews off so the job's steps are what the member sees."""
    async with mmpp_bot_process(
        standin, tmp_path, model_dir, DEFAULT_STYLE="slow-style", PROGRESS_EDIT_INTERVAL_S="0.5",
        PREVIEW_EVERY="1000", **env_lines,
    ) as bot:
        yield bot


async def drawing(standin: StandIn, member: FakeMember, selfie: bytes) -> InteractionRecord:
    interaction = await standin.send_slash_command("profile", user=member, attachments={"selfie": ("me.jpg", selfie)})
    await interaction.wait_for_content("step", timeout=60)
    return interaction


async def test_kill_9_mid_job_then_restart_tells_each_member_in_their_language_and_closes_the_rows(
    tmp_path: Path, slow_model_dir: Path, selfie_bytes: bytes
) -> None:
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        member = standin.add_member(guild, standin.add_user("ana"))
        korean = standin.add_member(guild, standin.add_user("minji"))
        # Stands for a job a bot from before 0006 left open: its row has no language.
        legacy = standin.add_member(guild, standin.add_user("jun"))
        async with mmpp_bot(standin, tmp_path, slow_model_dir) as bot:
            interaction = await drawing(standin, member, selfie_bytes)
            # Two more wait behind it, in a Korean Discord client.
            waiting = [
                await standin.send_slash_command(
                    "profile", user=m, locale="ko", attachments={"selfie": ("me.jpg", selfie_bytes)}
                )
                for m in (korean, legacy)
            ]
            async with asyncio.timeout(30):
                while len(log_rows(tmp_path)) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            workers = psutil.Process(bot.pid).children(recursive=True)
            assert workers  # the face-search processes
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
        # The bot's helper processes do not outlive it: each restart after a kill would add more.
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, timeout=15)
        assert not alive, [p.cmdline() for p in alive]
        rows = sql(tmp_path, "select user_id, outcome, interaction_token, language from generation_log")
        # What the next start needs (the catalogue's language, not the raw locale), never the selfie.
        assert sorted(rows) == sorted([
            (member.user.id, None, interaction.token, "en"),
            (korean.user.id, None, waiting[0].token, "ko"),
            (legacy.user.id, None, waiting[1].token, "ko"),
        ])
        sql(tmp_path, f"update generation_log set language = null where user_id = {legacy.user.id}")

        settings = bot_settings(standin, slow_model_dir, tmp_path, default_style="slow-style")
        runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05})
        try:
            await runtime.start()
            await runtime.wait_ready(timeout=60)
            notices = [
                await interaction.wait_for_content("I restarted before your portrait was finished", timeout=30),
                await waiting[0].wait_for_content("봇이 다시 시작하느라 프로필 사진을 끝내지 못했어요", timeout=30),
                await waiting[1].wait_for_content("I restarted before your portrait was finished", timeout=30),
            ]
            assert all(n.kind == "edit_original" and not n.files for n in notices)
            assert "/프로필" in (notices[1].content or "") and "restarted" not in (notices[1].content or "")
            assert runtime.services is not None
            async with asyncio.timeout(10):
                while any(outcome is None for outcome, _ in log_rows(tmp_path)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert log_rows(tmp_path) == [("interrupted", None)] * 3
            for m in (member, korean, legacy):
                assert await runtime.services.repo.usage_today(m.user.id, guild.id) == (0, 0)
        finally:
            await runtime.stop()
            reset_endpoints()


async def test_sigterm_mid_job_tells_the_member_closes_the_row_and_exits_in_bounded_time(
    tmp_path: Path, slow_model_dir: Path, selfie_bytes: bytes
) -> None:
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        member = standin.add_member(guild, standin.add_user("ana"))
        async with mmpp_bot(standin, tmp_path, slow_model_dir, SHUTDOWN_GRACE_S="1") as bot:
            interaction = await drawing(standin, member, selfie_bytes)
            workers = psutil.Process(bot.pid).children(recursive=True)
            started = time.monotonic()
            bot.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(bot.wait(), timeout=60)
            stopped_in = time.monotonic() - started
            _, alive = await asyncio.to_thread(psutil.wait_procs, workers, timeout=15)
            assert not alive, [p.cmdline() for p in alive]
        output = (tmp_path / "bot.log").read_text()
        assert returncode == 0, output
        # The designed bound: grace (1 s) + the engine's stop (10 s) + replies (10 s) + notices (10 s).
        assert stopped_in < 45, output
        notice = await interaction.wait_for_content("restarting", timeout=5)
        assert notice.ephemeral
        assert log_rows(tmp_path) == [("interrupted", None)]
