"""No image the safety check flags reaches a channel; NSFW channels relax it only where an admin says."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.bot.conftest import World, closed_log_rows
from tests.bot.test_rooms import style_command
from tests.discord_standin import BotAction, FakeMember, FakeUser, InteractionRecord


def set_thresholds(world: World, *, nudity: float | None = None, special_care: float | None = None) -> None:
    """Move the loaded tiny checker's thresholds: at -1 every image crosses them, at 1 none does."""
    checker = world.engine.safety
    assert checker is not None, "the tiny model ships a safety checker, loaded like the production one"
    with torch.no_grad():
        if nudity is not None:
            checker.model.concept_embeds_weights.fill_(nudity)
        if special_care is not None:
            checker.model.special_care_embeds_weights.fill_(special_care)


def is_end(action: BotAction) -> bool:
    return "safety check flagged" in (action.content or "") or any(
        f.filename.startswith("portrait-") for f in action.files
    )


async def profile(world: World, user: FakeMember | FakeUser, selfie: bytes, channel_id: int | None = None) -> str:
    """/profile as `user`: "posted" or "filtered" (checked against what Discord saw)."""
    interaction = await world.standin.send_slash_command(
        "profile", user=user, channel_id=channel_id, attachments={"selfie": ("me.jpg", selfie)}
    )
    end = await interaction.wait_for(is_end, timeout=60)
    if not end.has_files:
        assert end.ephemeral and "safety check flagged" in (end.content or ""), end.content
        assert_nothing_shown(interaction, end)
        return "filtered"
    assert end.files[0].filename.startswith("portrait-")
    return "posted"


def assert_nothing_shown(interaction: InteractionRecord, end: BotAction) -> None:
    # Neither the portrait nor a preview of it, to anyone, and the private reply says why.
    assert not any(a.has_files for a in interaction.actions)
    assert end.attachments == [] and all(a.ephemeral for a in interaction.actions)


async def test_a_flagged_portrait_is_not_posted_is_logged_filtered_and_counts(
    world: World, selfie_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    member = world.members[0]
    world.services.repo.user_daily_quota = 2
    assert await profile(world, member, selfie_bytes) == "posted"  # the check ran and let it through
    set_thresholds(world, nudity=-1.0)
    with caplog.at_level(logging.INFO):
        assert await profile(world, member, selfie_bytes) == "filtered"
    assert "image filtered" in caplog.text
    assert [r.outcome for r in await closed_log_rows(world, 2)] == ["delivered", "filtered"]
    metrics = world.services.queue.metrics
    assert metrics.value("mmpp_queue_jobs_total", {"outcome": "filtered"}) == 1
    assert metrics.value("mmpp_worker_safety_refusals_total") == 1  # the one picture refused

    # It used the GPU like any portrait: the member's two of today are gone.
    third = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    refusal = await third.wait_for_message(timeout=30)
    assert refusal.ephemeral and "daily limit of 2" in (refusal.content or "")


async def test_nsfw_channels_relax_the_check_only_where_the_admin_turned_it_on(
    world: World, selfie_bytes: bytes
) -> None:
    after_dark = world.guild.add_channel("after-dark")
    after_dark.nsfw = True
    set_thresholds(world, nudity=-1.0)  # every picture looks like nudity to the checker now
    members = world.members

    assert await profile(world, members[0], selfie_bytes, after_dark.id) == "filtered"  # strict by default
    assert "strict everywhere" in await style_command(world, "show", world.admin)
    assert "relaxed in channels" in await style_command(world, "set", world.admin, relax_safety=True)
    assert await profile(world, members[0], selfie_bytes, after_dark.id) == "posted"
    assert await profile(world, members[1], selfie_bytes) == "filtered"  # an ordinary channel
    assert await profile(world, world.dm_user, selfie_bytes) == "filtered"  # DMs stay strict

    set_thresholds(world, special_care=-1.0)
    assert await profile(world, members[2], selfie_bytes, after_dark.id) == "filtered"  # never relaxed
    await style_command(world, "reset", world.admin)
    assert "strict everywhere" in await style_command(world, "show", world.admin)
