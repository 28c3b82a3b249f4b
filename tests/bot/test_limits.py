"""Limits a member runs into through Discord: a full queue and the daily quota, each ephemeral."""

from __future__ import annotations

import pytest

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"queue_capacity": 1, "user_daily_quota": 2}


async def test_a_full_queue_says_how_long_the_wait_is(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    standin = world.standin
    running = await standin.send_slash_command("profile", user=world.members[0],
                                               attachments={"selfie": ("me.jpg", selfie_bytes)})
    await engine_gate.wait_for_calls(1)
    waiting = await standin.send_slash_command("profile", user=world.members[1],
                                               attachments={"selfie": ("me.jpg", selfie_bytes)})
    await waiting.wait_for_content("You're next", timeout=30)

    refused = await standin.send_slash_command("profile", user=world.members[2],
                                               attachments={"selfie": ("late.jpg", selfie_bytes)})
    message = await refused.wait_for_message(timeout=30)
    assert message.ephemeral and "too busy right now" in (message.content or "")
    assert "1 portraits are already waiting" in (message.content or "")
    # Answered at once, in the acknowledgement itself, and before anything was downloaded.
    assert message.kind == "callback" and message.at - refused.created_at < 1.0
    assert not [e for e in standin.log.of_kind("rest") if "late.jpg" in e.text]
    engine_gate.release()
    for interaction in (running, waiting):
        await interaction.wait_for_final_file(timeout=60)


async def test_reroll_counts_against_the_quota(world: World, selfie_bytes: bytes) -> None:
    member = world.members[1]
    first = await (await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )).wait_for_final_file(timeout=60)
    reroll_id = next(c for c in first.custom_ids if c.startswith("mmpp:reroll"))
    await (await world.standin.send_component(first, reroll_id)).wait_for_final_file(timeout=60)
    third = await world.standin.send_component(first, reroll_id)
    refusal = await third.wait_for_message()
    assert refusal.ephemeral and "daily limit of 2" in (refusal.content or "")


async def test_the_daily_quota_is_counted_from_finished_portraits(world: World, selfie_bytes: bytes) -> None:
    member = world.members[0]
    for _ in range(2):
        interaction = await world.standin.send_slash_command(
            "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
        )
        await interaction.wait_for_final_file(timeout=60)
    third = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    refusal = await third.wait_for_message()
    assert refusal.ephemeral
    assert "You have made 2 portraits today, the daily limit of 2." in (refusal.content or "")
    # The quota is decided after the acknowledgement and before the download.
    assert third.callback is not None and third.callback.loading
    assert not [e for e in world.standin.log.of_kind("rest") if "/cdn/" in e.text and e.at > third.created_at]
    other = await world.standin.send_slash_command(
        "profile", user=world.members[1], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await other.wait_for_final_file(timeout=60)


async def test_style_previews_count_against_the_daily_quota(world: World) -> None:
    admin = world.admin
    for _ in range(2):
        preview = await world.standin.send_slash_command("style preview", user=admin)
        await preview.wait_for_final_file(timeout=60, final=lambda a: "sample" in (a.content or ""))
        await closed_log_rows(world, len(world.standin.interactions))
    third = await world.standin.send_slash_command("style preview", user=admin)
    refusal = await third.wait_for_message(lambda a: "daily limit" in (a.content or ""), timeout=30)
    assert refusal.ephemeral and "daily limit of 2" in (refusal.content or "")
    assert not third.files
    rows = await closed_log_rows(world, 2)
    assert [(r.kind, r.outcome) for r in rows] == [("preview", "delivered")] * 2
