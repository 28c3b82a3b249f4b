"""Discord failing the final edit, proxies that drop `Via`, hostile attachments: every member still
gets a portrait or a clear message, and the log says what really happened."""

from __future__ import annotations

import asyncio

import pytest

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows
from tests.discord_standin import FakeUser, InteractionRecord, StoredMessage, StreamedAsset

MB = 1024 * 1024


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    # Progress edits at most once a minute: after "Drawing…", the next edit is the final one.
    return {"progress_edit_interval_s": 60.0, "max_upload_bytes": 2 * MB, "download_timeout_s": 2.0}


async def drawing(world: World, member: object, selfie: bytes, gate: RecordingEngine) -> InteractionRecord:
    """A /profile whose job is on the (held) engine, its reply showing "Drawing…"."""
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie)}  # type: ignore[arg-type]
    )
    await gate.wait_for_calls(1)
    await interaction.wait_for_content("Drawing", timeout=30)
    return interaction


async def dm_post(world: World, user: FakeUser, timeout: float = 40.0) -> StoredMessage:
    dm = world.standin.dm_channel(user).id
    async with asyncio.timeout(timeout):
        while True:
            posts = [m for m in world.standin.channel_messages if m.channel_id == dm]
            if posts:
                return posts[0]
            await asyncio.sleep(0.05)


async def test_a_final_edit_failing_with_5xx_for_good_sends_the_portrait_by_dm_never_the_channel(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[0]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    fault = world.standin.inject_fault("PATCH", world.standin.original_reply_path(interaction), 502)
    engine_gate.release()

    post = await dm_post(world, member.user)
    assert [a["filename"] for a in post.attachments] == ["portrait-tiny-style.png", "avatar-preview.png"]
    assert "couldn't update my earlier reply" in post.content
    assert {c.split(":")[1] for c in post.custom_ids} == {"reroll", "delete"}, "no Post in a DM"
    assert fault.hits == 5  # discord.py's own retries ran out first
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "delivered_fallback"
    assert world.standin.public_messages() == [], "the member never chose to show it"


async def test_expired_token_and_closed_dms_keep_the_portrait_for_last_in_both_languages(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[1]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    world.standin.inject_fault("PATCH", world.standin.original_reply_path(interaction), 404, code=10015)
    dm = world.standin.dm_channel(member.user).id
    world.standin.inject_fault("POST", rf"/channels/{dm}/messages$", 403, code=50007)
    engine_gate.release()

    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "undelivered"
    assert world.standin.public_messages() == [] and not world.standin.channel_messages
    assert len(world.services.results) == 1, "kept in memory, not in the database"

    for locale, words in (("en-US", "Only you can see it"), ("ko", "나만 볼 수 있어요")):
        last = await world.standin.send_slash_command("last", user=member, locale=locale)
        shown = await last.wait_for_message()
        assert shown.ephemeral and words in (shown.content or "")
        assert [f.filename for f in shown.files] == ["portrait-tiny-style.png"]
        assert any(c.startswith("mmpp:post:") for c in shown.custom_ids)
    nobody = await world.standin.send_slash_command("last", user=world.members[2], locale="ko")
    empty = await nobody.wait_for_message()
    assert empty.ephemeral and not empty.files and "15분" in (empty.content or "")
    assert world.standin.public_messages() == []


async def test_a_sustained_429_on_the_final_edit_falls_back_too(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[2]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    fault = world.standin.inject_fault("PATCH", world.standin.original_reply_path(interaction), 429, retry_after=0.2)
    engine_gate.release()
    post = await dm_post(world, member.user)
    assert [a["filename"] for a in post.attachments] == ["portrait-tiny-style.png", "avatar-preview.png"]
    assert fault.hits == 5
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "delivered_fallback"


async def test_a_429_without_via_from_the_proxy_is_waited_out_not_taken_for_a_ban(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[0]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    fault = world.standin.inject_fault(
        "PATCH", world.standin.original_reply_path(interaction), 429, times=2, retry_after=0.2, via=False
    )
    engine_gate.release()
    final = await interaction.wait_for_final_file(timeout=60)
    assert final.kind == "edit_original" and fault.hits == 2
    assert not world.standin.channel_messages
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "delivered"


async def test_a_huge_attachment_that_lies_about_its_size_stops_at_the_cap(world: World) -> None:
    member = world.members[0]
    streams = [StreamedAsset(b"\xff\xd8\xff", 200 * MB) for _ in range(5)]
    attachments = [
        world.standin.register_streamed_attachment(f"small{i}.jpg", s, claimed_size=10 * 1024)
        for i, s in enumerate(streams)
    ]
    # Five at once from one member: one is read, the others are refused before any download.
    interactions = await asyncio.gather(*(
        world.standin.send_slash_command("profile", {"selfie": a}, user=member) for a in attachments
    ))
    answers = [await i.wait_for_message(timeout=30) for i in interactions]
    too_big = [a for a in answers if "larger than 2 MB" in (a.content or "")]
    busy = [a for a in answers if "still reading the picture" in (a.content or "")]
    assert len(too_big) == 1 and len(busy) == 4 and all(a.ephemeral for a in answers)
    read = [s.sent for s in streams if s.sent]
    assert len(read) == 1
    # The cap plus what loopback socket buffers hold, not 200 MB.
    assert read[0] < 2 * MB + 16 * MB
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "refused"
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (0, 0)


async def test_a_stalled_download_ends_with_a_message(world: World) -> None:
    stall = StreamedAsset(b"\xff\xd8\xff", MB, chunk=1024, delay_s=1.0)
    attachment = world.standin.register_streamed_attachment("slow.jpg", stall)
    interaction = await world.standin.send_slash_command("profile", {"selfie": attachment}, user=world.members[1])
    answer = await interaction.wait_for_message(timeout=30)
    assert answer.ephemeral and "longer than 2 s to download" in (answer.content or "")


async def test_pictures_are_fetched_only_from_the_cdn(world: World, selfie_bytes: bytes) -> None:
    attachment = world.standin.register_attachment(selfie_bytes, "me.jpg")
    attachment["url"] = attachment["proxy_url"] = f"{world.standin.base_url}/internal/admin"
    interaction = await world.standin.send_slash_command("profile", {"selfie": attachment}, user=world.members[2])
    answer = await interaction.wait_for_message(timeout=30)
    assert answer.ephemeral and "only read pictures uploaded to Discord" in (answer.content or "")
    assert not [e for e in world.standin.log.entries if "/internal/admin" in e.text]


async def test_a_job_cancelled_after_the_gpu_started_counts(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[1]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    cancel = await world.standin.send_slash_command("cancel", user=member)
    assert "Cancelled" in ((await cancel.wait_for_message()).content or "")
    engine_gate.release()
    await interaction.wait_for_content("cancelled", timeout=30)
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "cancelled" and row.started_at is not None
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (1, 1)


async def test_cancel_while_the_selfie_is_still_downloading_stops_it_before_the_queue(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[0]
    slow = StreamedAsset(selfie_bytes, len(selfie_bytes), chunk=4096, delay_s=0.04, declare_length=True)
    attachment = world.standin.register_streamed_attachment("me.jpg", slow)
    interaction = await world.standin.send_slash_command("profile", {"selfie": attachment}, user=member)
    await interaction.wait_for_callback()
    cancel = await world.standin.send_slash_command("cancel", user=member)
    assert "Cancelled" in ((await cancel.wait_for_message()).content or "")
    answer = await interaction.wait_for_message(timeout=30)
    assert answer.ephemeral and "Cancelled" in (answer.content or "") and not interaction.files
    [row] = await closed_log_rows(world, 1)
    assert row.outcome == "refused" and row.started_at is None
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (0, 0)


async def test_a_reply_deleted_while_drawing_cancels_the_job_and_it_counts(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[2]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    assert interaction.original_message_id is not None
    world.standin.message(interaction.original_message_id).deleted = True  # a moderator removed it
    engine_gate.release()
    [row] = await closed_log_rows(world, 1, timeout=60)
    assert (row.outcome, row.reason) == ("cancelled", "reply deleted") and row.started_at is not None
    assert not world.standin.channel_messages  # nobody was waiting for it
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (1, 1)


@pytest.mark.parametrize("lost", [502, 0], ids=["5xx for good after each edit", "connection dropped after the edit"])
async def test_a_final_edit_discord_applied_is_not_delivered_twice_nor_taken_back(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine, lost: int
) -> None:
    """Discord did the final edit and only its answer was lost: the member already sees the portrait
    (and may have pressed Post). No copy by DM, no error written over it."""
    member = world.members[0]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    fault = world.standin.inject_fault("PATCH", world.standin.original_reply_path(interaction), lost, applied=True)
    engine_gate.release()

    [row] = await closed_log_rows(world, 1, timeout=60)
    assert fault.hits == (5 if lost else 1)  # discord.py retries a 5xx itself, never a dropped answer
    assert row.outcome == "delivered"
    assert interaction.original_message_id is not None
    reply = world.standin.message(interaction.original_message_id)
    assert not reply.deleted and "Here is your" in reply.content
    assert [a["filename"] for a in reply.attachments] == ["portrait-tiny-style.png", "avatar-preview.png"]
    assert any(c.startswith("mmpp:post:") for c in interaction.last_message.custom_ids)  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    assert not world.standin.channel_messages, "no second copy in the member's DMs"


async def test_a_reply_deleted_while_the_final_edits_answer_was_lost_is_not_resent_by_dm(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    """The member saw the portrait and pressed Delete before the bot learned the edit had landed:
    what they deleted does not come back in their DMs."""
    member = world.members[1]
    interaction = await drawing(world, member, selfie_bytes, engine_gate)
    path = world.standin.original_reply_path(interaction)
    world.standin.inject_fault("PATCH", path, 502, applied=True)
    world.standin.inject_fault("GET", path, 404, code=10008)  # what Discord answers for a deleted message
    engine_gate.release()

    [row] = await closed_log_rows(world, 1, timeout=60)
    assert (row.outcome, row.reason) == ("cancelled", "reply deleted")
    await asyncio.sleep(0.5)
    assert not world.standin.channel_messages
