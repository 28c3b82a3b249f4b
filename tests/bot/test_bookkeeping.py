"""Bookkeeping never undoes a delivery: a database locked by another connection while a portrait is
drawn and delivered, and recovery finding a row left open over a portrait the member already has."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from mmpp.bot.app.recovery import close_open_jobs
from mmpp.bot.db.database import SQLITE_BUSY_TIMEOUT_S
from mmpp.bot.db.models import GenerationLog
from tests.bot.conftest import World, closed_log_rows


@contextmanager
def locked(db_file: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock (as `sqlite3 mmpp.sqlite3` with BEGIN EXCLUSIVE
    would): every write of the bot waits its busy timeout, then fails with "database is locked"."""
    other = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


class PrepareGate:
    """Holds `engine.prepare` (after the quota row is reserved, before the job is queued)."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.called = threading.Event()
        self.release = threading.Event()
        engine = world.engine
        real = engine.prepare

        def held(located):  # type: ignore[no-untyped-def]
            self.called.set()
            self.release.wait(60)
            return real(located)

        monkeypatch.setattr(engine, "prepare", held)


async def test_a_locked_database_neither_stops_the_job_nor_takes_the_portrait_back(
    world: World, selfie_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = world.members[0]
    gate = PrepareGate(world, monkeypatch)
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await asyncio.to_thread(gate.called.wait, 30)
    with locked(tmp_path / "mmpp.sqlite3"):
        gate.release.set()
        # "started" cannot be written (busy timeout, then "database is locked"): the job goes on.
        final = await interaction.wait_for_final_file(timeout=SQLITE_BUSY_TIMEOUT_S + 40)
        delivered_at = time.monotonic()
        # The delivery's own write fails the same way, after the busy timeout.
        await asyncio.sleep(SQLITE_BUSY_TIMEOUT_S + 2)
        message = world.standin.message(final.message_id)  # type: ignore[arg-type]
        assert not message.deleted, "the member's portrait was deleted"
        assert [a["filename"] for a in message.attachments] == ["portrait-tiny-style.png", "avatar-preview.png"]
        assert not [a for a in interaction.actions if "went wrong" in (a.content or "")]
        assert time.monotonic() - delivered_at > SQLITE_BUSY_TIMEOUT_S
    # Once the lock is gone the write is retried: the row says what the member got, and counts.
    [row] = await closed_log_rows(world, 1, timeout=60)
    assert row.outcome == "delivered"
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (1, 1)
    assert not world.standin.message(final.message_id).deleted  # type: ignore[arg-type]


async def test_recovery_never_takes_back_a_portrait_the_member_already_has(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[1]
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    final = await interaction.wait_for_final_file(timeout=60)
    [row] = await closed_log_rows(world, 1)
    # As a crash between the delivery and its write leaves it: open, with the interaction's token.
    async with world.services.database.sessions.begin() as session:
        await session.execute(
            update(GenerationLog).where(GenerationLog.id == row.id)
            .values(finished_at=None, outcome=None, interaction_token=interaction.token)
        )
    jobs = await world.services.repo.open_jobs()
    assert [j.log_id for j in jobs] == [row.id]
    assert world.runtime.bot is not None
    await close_open_jobs(world.runtime.bot, world.services.repo, jobs, why="restart")

    message = world.standin.message(final.message_id)  # type: ignore[arg-type]
    assert [a["filename"] for a in message.attachments] == ["portrait-tiny-style.png", "avatar-preview.png"]
    assert "wasn't made" not in message.content
    assert not [m for m in world.standin.channel_messages if "wasn't made" in m.content]
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "delivered"
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (1, 1)


async def test_recovery_closes_days_old_jobs_without_a_word(world: World) -> None:
    # A bot that was down for days: its open rows are no reason to post in a channel now.
    repo = world.services.repo
    member = world.members[2]
    old = await repo.log_queued(member.user.id, world.guild.id, world.guild.text_channels[0].id, "tiny-style")
    fresh = await repo.log_queued(member.user.id, world.guild.id, world.guild.text_channels[0].id, "tiny-style")
    async with world.services.database.sessions.begin() as session:
        await session.execute(
            update(GenerationLog).where(GenerationLog.id == old)
            .values(queued_at=datetime.now(UTC) - timedelta(days=3))
        )
    assert world.runtime.bot is not None
    jobs = await repo.open_jobs()
    assert await close_open_jobs(world.runtime.bot, repo, jobs, why="restart") == 2
    told = [m for m in world.standin.channel_messages if f"<@{member.user.id}>" in m.content]
    assert len(told) == 1  # the fresh one only
    rows = {r.id: r for r in await closed_log_rows(world, 2)}
    assert rows[old].outcome == rows[fresh].outcome == "interrupted"
    assert "too old" in (rows[old].reason or "")


async def test_recovery_without_a_reply_to_edit_tells_each_member_by_dm_in_their_language(world: World) -> None:
    # No interaction token kept (nothing to edit): the notice is a DM, worded in the language the
    # member was answered in when the job opened; a row from before languages were kept, English.
    repo = world.services.repo
    channel = world.guild.text_channels[0].id
    korean, english, legacy = world.members[:3]
    await repo.reserve(korean.user.id, world.guild.id, channel, "tiny-style", kind="preview", language="ko")
    await repo.reserve(english.user.id, world.guild.id, channel, "tiny-style", language="en")
    await repo.log_queued(legacy.user.id, world.guild.id, channel, "tiny-style")
    # A language whose catalogue the operator has since removed: English, and the others are still told.
    await repo.reserve(world.dm_user.id, None, None, "tiny-style", language="fr")
    assert world.runtime.bot is not None
    assert await close_open_jobs(world.runtime.bot, repo, await repo.open_jobs(), why="stop") == 4

    def dm_to(member: object) -> str:
        user = getattr(member, "user", member)
        [post] = [m for m in world.standin.channel_messages if m.channel_id == world.standin.dm_channel(user).id]
        return post.content

    assert dm_to(korean) == (
        f"<@{korean.user.id}> ⚠️ 봇이 멈춰야 해서 스타일 미리보기를 끝내지 못했어요. "
        "오늘 한도에는 포함되지 않으니 언제든 다시 요청해 주세요."
    )
    for user in (english.user, legacy.user, world.dm_user):
        assert dm_to(user).startswith(f"<@{user.id}> ⚠️ I had to stop before your portrait was finished")
    assert world.standin.public_messages() == []
    assert {r.outcome for r in await closed_log_rows(world, 4)} == {"interrupted"}


async def test_style_list_is_acknowledged_before_any_sample_is_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmpp.inference.style_folder import Style

    held = threading.Event()
    real = Style.sample_png

    def slow(self: Style) -> bytes | None:
        held.wait(30)  # sample pictures that take long to read
        return real(self)

    monkeypatch.setattr(Style, "sample_png", slow)
    listing = await world.standin.send_slash_command("style list", user=world.admin, enforce_permissions=False)
    try:
        callback = await listing.wait_for_callback(timeout=5)
        assert callback.loading and callback.ephemeral
    finally:
        held.set()
    shown = await listing.wait_for_message(timeout=30)
    assert shown.ephemeral and len(shown.embeds) == 2
