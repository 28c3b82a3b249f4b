"""Bursts: many members at once against a quota, and 200 at once against a slow engine on a busy CPU."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows
from tests.discord_standin import FakeMember, StreamedAsset

MB = 1024 * 1024


@pytest.fixture
def bot_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    return dict(getattr(request, "param", {}))


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """Every core busy with another process, as on a loaded host, for the length of the test."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 120\nwhile time.time() < end: pass"])
        for _ in range(2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def crowd(world: World, n: int) -> list[FakeMember]:
    return [world.standin.add_member(world.guild, world.standin.add_user(f"crowd{i}")) for i in range(n)]


@pytest.mark.parametrize("bot_overrides", [{"server_daily_quota": 10}], indirect=True)
async def test_thirty_members_at_once_get_exactly_the_servers_daily_ten(world: World, selfie_bytes: bytes) -> None:
    members = crowd(world, 30)
    interactions = await asyncio.gather(*(
        world.standin.send_slash_command("profile", user=m, attachments={"selfie": ("me.jpg", selfie_bytes)})
        for m in members
    ))
    answers = await asyncio.gather(*(
        i.wait_for(lambda a: (a.has_files and bool(a.components)) or "for today" in (a.content or ""), timeout=120)
        for i in interactions
    ))
    portraits = [a for a in answers if a.has_files]
    refusals = [a for a in answers if "This server has made its 10 portraits for today" in (a.content or "")]
    assert (len(portraits), len(refusals)) == (10, 20)
    rows = await closed_log_rows(world, 10)
    assert sorted(r.outcome or "" for r in rows) == ["delivered"] * 10
    assert await world.services.repo.usage_today(members[0].user.id, world.guild.id) == (
        int(answers[0].has_files), 10
    )


@pytest.mark.parametrize("bot_overrides", [{"queue_capacity": 100}], indirect=True)
async def test_two_hundred_at_once_are_all_acknowledged_in_time_under_a_busy_engine_and_cpu(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine, busy_cpu: None
) -> None:
    members = crowd(world, 200)
    # The engine is busy: a first job holds it (the gate), so everyone else waits in line.
    first = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await engine_gate.wait_for_calls(1)
    interactions = await asyncio.gather(*(
        world.standin.send_slash_command("profile", user=m, attachments={"selfie": (f"crowd{i}.jpg", selfie_bytes)})
        for i, m in enumerate(members)
    ))
    callbacks = await asyncio.gather(*(i.wait_for_callback(timeout=10) for i in interactions))
    # The stand-in refuses a callback later than Discord's 3 s; every one of them was accepted.
    assert not [i for i in interactions if i.rejected]
    assert max(c.at - i.created_at for c, i in zip(callbacks, interactions, strict=True)) < 3.0

    # The line holds 100; the other 100 hear so in the acknowledgement itself, before any download.
    full = [i for i, c in zip(interactions, callbacks, strict=True) if "too busy right now" in (c.content or "")]
    assert len(full) == 200 - 100 and all(i.callback is not None and i.callback.ephemeral for i in full)
    downloaded = {e.text.split("/")[-1].split(" ")[0] for e in world.standin.log.of_kind("rest") if "/cdn/" in e.text}
    assert not {f"crowd{interactions.index(i)}.jpg" for i in full} & downloaded
    engine_gate.release()
    await first.wait_for_final_file(timeout=60)
    admitted = [i for i in interactions if i not in full]
    await asyncio.gather(*(i.wait_for_final_file(timeout=120) for i in admitted))


def most_at_once(streams: list[StreamedAsset]) -> int:
    """The most downloads that were being served at the same instant."""
    edges = sorted(
        [(s.started_at, 1) for s in streams if s.started_at is not None]
        + [(s.ended_at, -1) for s in streams if s.ended_at is not None],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("bot_overrides", [{"max_concurrent_downloads": 3}], indirect=True)
async def test_members_sending_pictures_together_hold_a_bounded_number_in_memory(world: World) -> None:
    """Twelve accounts send 1 MB pictures at once: at most three are held at a time (each stays in
    memory until its face search ends), the others wait their turn, and every one is answered."""
    members = crowd(world, 12)
    streams = [StreamedAsset(b"\xff\xd8\xff", MB, delay_s=0.03) for _ in members]
    attachments = [
        world.standin.register_streamed_attachment(f"big{i}.jpg", s) for i, s in enumerate(streams)
    ]
    interactions = await asyncio.gather(*(
        world.standin.send_slash_command("profile", {"selfie": a}, user=m)
        for a, m in zip(attachments, members, strict=True)
    ))
    answers = await asyncio.gather(*(i.wait_for_message(timeout=60) for i in interactions))
    assert all("isn't a picture" in (a.content or "") and a.ephemeral for a in answers)
    assert all(s.sent == MB for s in streams)
    assert most_at_once(streams) <= 3
