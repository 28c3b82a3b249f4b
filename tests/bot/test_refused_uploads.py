"""A member who keeps sending pictures without a usable face is asked to wait before the next one is
downloaded and decoded: each costs a decode in the pool everyone shares."""

from __future__ import annotations

import asyncio
import re
import time

from skimage import data as skdata

from mmpp.bot.uploads.refusals import ALLOWED_REFUSALS, WINDOW_S, RefusedUploads
from tests.bot.conftest import World
from tests.conftest import encode
from tests.discord_standin import FakeUser

NO_FACE = "couldn't find a face"


async def idle(world: World, user: FakeUser) -> None:
    """The bot has finished with the member's last request (its reply can arrive a moment before)."""
    async with asyncio.timeout(30):
        while world.services.admissions.preparing(user.id) or world.services.queue.job_for(user.id) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def downloads(world: World) -> int:
    return len([e for e in world.standin.log.entries if "GET /cdn/" in e.text])


async def send(world: World, member: object, picture: bytes, expect: str, locale: str = "en-US") -> str:
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", picture)}, locale=locale  # type: ignore[arg-type]
    )
    answer = await interaction.wait_for_content(expect, timeout=60)
    assert answer.ephemeral
    await idle(world, member.user)  # type: ignore[attr-defined]
    return answer.content or ""


async def test_pictures_without_a_face_again_and_again_wait_before_the_next_download(
    world: World, selfie_bytes: bytes
) -> None:
    member, other = world.members[0], world.members[1]
    scenery = encode(skdata.coffee())

    # Two that do not work, then a portrait: the count starts over.
    for _ in range(ALLOWED_REFUSALS - 1):
        await send(world, member, scenery, NO_FACE)
    await send(world, member, selfie_bytes, "Here is your")

    first = time.time()
    for _ in range(ALLOWED_REFUSALS):
        await send(world, member, scenery, NO_FACE)
    before = downloads(world)
    answer = await send(world, member, scenery, "take a short break")
    # Until the first of the three is two minutes old, as a timestamp each member's client words.
    [until] = [int(t) for t in re.findall(r"<t:(\d+):R>", answer)]
    assert first + WINDOW_S - 5 <= until <= time.time() + WINDOW_S + 1
    assert downloads(world) == before, "refused before the picture was downloaded"
    ko = await send(world, member, selfie_bytes, "잠시 쉬었다가", locale="ko")
    assert re.search(r"<t:\d+:R>", ko)
    assert downloads(world) == before, "a good picture waits too: the limit is on the member"

    # Another member is not held back by this one.
    await send(world, other, scenery, NO_FACE)
    assert downloads(world) == before + 1


def test_many_accounts_cannot_grow_the_memory_and_a_wait_ends() -> None:
    now = [0.0]
    refusals = RefusedUploads(max_members=100, clock=lambda: now[0])
    for user_id in range(10_000):
        refusals.refused(user_id)
    assert len(refusals) == 100
    for _ in range(ALLOWED_REFUSALS):
        refusals.refused(1)
    try:
        refusals.check(1)
        raise AssertionError("a member past the limit must wait")
    except Exception as exc:
        assert getattr(exc, "code", None) == "refused_uploads"
    now[0] += WINDOW_S
    refusals.check(1)  # two minutes later the member may try again
