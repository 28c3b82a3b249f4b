"""The unlinkable guard as a member and an admin meet it through Discord.

The tiny model's noise never matches anyone, so the engine's results are swapped for the selfie
photo itself (mirrored): the real worker then measures, redraws and finally tells the member.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

from mmpp.bot.portrait.deliver import STILL_LINKABLE, UNMEASURED
from mmpp.inference.engine import GenerationResult
from tests.bot.conftest import World, closed_log_rows
from tests.bot.test_profile import custom_id, profile
from tests.bot.test_rooms import style_command
from tests.queue.test_unlinkable import as_the_selfie


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"user_daily_quota": 3}


@pytest.fixture
def selfie_engine(world: World, astronaut: Image.Image) -> list[int]:
    """Every portrait comes back as the member's own photo (swapped in by the bot's engine recorder);
    returns the engine calls' batch sizes."""
    calls: list[int] = []
    mirrored = ImageOps.mirror(astronaut)

    def linkable(index: int, results: list[GenerationResult]) -> list[GenerationResult]:
        calls.append(len(results))
        return as_the_selfie(results, mirrored)

    world.recorder.swap = linkable
    return calls


async def test_a_portrait_that_stays_linkable_is_redrawn_free_and_the_member_is_told(
    world: World, selfie_bytes: bytes, selfie_engine: list[int]
) -> None:
    member = world.members[0]
    final = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=120)
    assert STILL_LINKABLE in (final.content or "")
    assert selfie_engine == [1, 1, 1], "drawn once, then two more tries"
    # One request, one log row: the quota counts rows, so the redraws cost the member nothing of it.
    [row] = await closed_log_rows(world, 1)
    assert row.user_id == member.id and row.outcome == "delivered"
    # The guard ran: told, the member may still post it, here where every portrait must pass the guard.
    post = await world.standin.send_component(final, custom_id(final, "mmpp:post"))
    await post.wait_for_message()
    assert len(world.standin.public_messages()) == 1


async def test_an_admin_turns_it_off_and_a_member_may_only_where_members_choose(
    world: World, selfie_bytes: bytes, selfie_engine: list[int]
) -> None:
    # A locked room: members may not turn it off themselves.
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=False)
    refused = await (await profile(world, world.members[0], selfie_bytes, unlinkable=False)).wait_for_message()
    assert refused.ephemeral and "unlinkable" in (refused.content or "") and selfie_engine == []

    shown = await style_command(world, "set", world.admin, style="tiny-style", unlinkable=False)
    assert "off: the most likeness" in shown
    final = await (await profile(world, world.members[1], selfie_bytes)).wait_for_final_file(timeout=120)
    assert STILL_LINKABLE not in (final.content or "") and selfie_engine == [1]

    # Where members choose, one may turn it off for their own portrait only.
    await style_command(world, "set", world.admin, style="tiny-style", unlinkable=True, allow_member_choice=True)
    final = await (await profile(world, world.members[2], selfie_bytes, unlinkable=False)).wait_for_final_file(
        timeout=120
    )
    assert STILL_LINKABLE not in (final.content or "") and selfie_engine == [1, 1]
    # Its Reroll keeps the member's choice...
    reroll = custom_id(final, "mmpp:reroll")
    assert reroll.endswith(":l")
    again = await (await world.standin.send_component(final, reroll)).wait_for_final_file(timeout=120)
    assert STILL_LINKABLE not in (again.content or "") and selfie_engine == [1, 1, 1]
    # ...while the room lets members choose; locked again, the guard is back for the next reroll.
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=False)
    third = await (await world.standin.send_component(again, custom_id(again, "mmpp:reroll"))).wait_for_final_file(
        timeout=120
    )
    assert STILL_LINKABLE in (third.content or "") and selfie_engine == [1, 1, 1, 1, 1, 1]


async def test_a_portrait_the_guard_could_not_measure_is_never_posted_for_the_member_who_is_told(
    world: World, selfie_bytes: bytes, selfie_engine: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmpp.inference import likeness

    def broken(image: Image.Image, *, face_crop: bool = False) -> likeness.Descriptor | None:
        raise RuntimeError("dlib fell over")

    await style_command(world, "set", world.admin, public=True)
    monkeypatch.setattr(likeness, "descriptor", broken)
    final = await (await profile(world, world.members[0], selfie_bytes)).wait_for_final_file(timeout=120)
    assert UNMEASURED in (final.content or "") and "posted in the channel too" not in (final.content or "")
    assert any(c.startswith("mmpp:post:") for c in final.custom_ids), "the member decides"
    assert world.standin.public_messages() == [] and selfie_engine == [1]


async def test_with_the_guard_off_a_room_that_posts_by_default_posts_no_portrait_that_matches(
    world: World, selfie_bytes: bytes, selfie_engine: list[int]
) -> None:
    await style_command(world, "set", world.admin, style="tiny-style", unlinkable=False)
    await style_command(world, "set", world.admin, public=True)
    final = await (await profile(world, world.members[0], selfie_bytes)).wait_for_final_file(timeout=120)
    assert "posted in the channel too" not in (final.content or "") and selfie_engine == [1]
    assert any(c.startswith("mmpp:post:") for c in final.custom_ids)
    assert world.standin.public_messages() == []
