"""Several takes, one request: a set drawn in one queue place and one engine call, shown together in
the member's private reply with a Post button for each, counted as its pictures."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from mmpp.bot.portrait.rules import default_takes
from mmpp.inference.queue import GenerationQueue
from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows
from tests.bot.test_profile import custom_id, profile
from tests.discord_standin import BotAction

PORTRAITS = ["portrait-tiny-style.png", "portrait-tiny-style-2.png"]


async def choose_takes(world: World, n: int) -> None:
    setting = await world.standin.send_slash_command(
        "style set", {"candidates": n}, user=world.admin, enforce_permissions=False
    )
    answer = await setting.wait_for_message()
    assert answer.ephemeral and "Takes per request" in str(answer.embeds)


def post_ids(final: BotAction) -> list[str]:
    return [cid for cid in final.custom_ids if cid.startswith("mmpp:post:")]


def seeds_of(final: BotAction) -> list[str]:
    match = re.search(r"seeds ([`\d, ]+)\)", final.content or "")
    assert match is not None, final.content
    return re.findall(r"\d+", match.group(1))


async def test_candidates_left_unset_draw_one_take_on_the_cpu_and_two_on_a_gpu(world: World) -> None:
    services = world.services
    assert services.settings.candidates is None
    # The bot's engine here draws on the CPU: one take each, as every other test here shows.
    assert default_takes(services.settings, services.queue) == 1
    gpu = GenerationQueue(RecordingEngine(world.engine, device="cuda:0"), services.settings)  # type: ignore[arg-type]
    assert gpu.on_gpu and default_takes(services.settings, gpu) == 2


@pytest.mark.parametrize("bot_overrides", [{"candidates": 3}])
async def test_candidates_set_for_the_bot_draws_that_many(world: World, selfie_bytes: bytes) -> None:
    final = await (await profile(world, world.members[0], selfie_bytes)).wait_for_final_file(timeout=90)
    assert [f.filename for f in final.files][:3] == [*PORTRAITS, "portrait-tiny-style-3.png"]
    assert len(post_ids(final)) == 3 and len(set(seeds_of(final))) == 3


async def test_a_set_of_two_is_one_reply_one_queue_place_one_engine_call_and_post_2_posts_the_second(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    await choose_takes(world, 2)
    engine_gate.release()
    member = world.members[1]
    interaction = await profile(world, member, selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)

    assert all(a.ephemeral for a in interaction.actions) and world.standin.public_messages() == []
    assert [f.filename for f in final.files] == [*PORTRAITS, "avatar-preview.png"]
    assert final.files[0].data != final.files[1].data, "two different takes"
    assert [b["label"] for b in final.buttons if b.get("custom_id", "").startswith("mmpp:post:")] == [
        "Post #1", "Post #2"
    ]
    assert "2 takes" in (final.content or "") and len(set(seeds_of(final))) == 2
    # One request: one engine call with both takes, one log row whose cost is two pictures.
    assert [len(call) for call in engine_gate.calls] == [2]
    [row] = await closed_log_rows(world, 1)
    assert (row.outcome, row.pictures) == ("delivered", 2)
    assert await world.services.repo.usage_today(member.user.id, world.guild.id) == (2, 2)

    post = await world.standin.send_component(final, post_ids(final)[1])
    await post.wait_for_message()
    [public] = world.standin.public_messages()
    assert public.attachments[0]["size"] == final.files[1].size, "the second picture, and only it"
    assert len(public.attachments) == 1


async def test_a_set_the_batch_cannot_hold_is_drawn_in_two_calls_and_seen_as_one_set(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world.services.queue, "max_batch_size", 1)  # MAX_BATCH_SIZE=1
    await choose_takes(world, 2)
    engine_gate.release()
    interaction = await profile(world, world.members[0], selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)
    assert [len(call) for call in engine_gate.calls] == [1, 1]
    assert [f.filename for f in final.files][:2] == PORTRAITS and len(post_ids(final)) == 2
    finals = [a for a in interaction.actions if any(f.filename in PORTRAITS for f in a.files)]
    assert finals == [final], "the member sees one set, not two answers"


async def test_reroll_draws_a_fresh_set(world: World, selfie_bytes: bytes) -> None:
    await choose_takes(world, 2)
    first = await (await profile(world, world.members[2], selfie_bytes)).wait_for_final_file(timeout=60)
    reroll = await world.standin.send_component(first, custom_id(first, "mmpp:reroll"))
    second = await reroll.wait_for_final_file(timeout=60)
    assert [f.filename for f in second.files][:2] == PORTRAITS and len(post_ids(second)) == 2
    assert not set(seeds_of(first)) & set(seeds_of(second))
    assert {first.files[0].data, first.files[1].data}.isdisjoint({second.files[0].data, second.files[1].data})


async def test_a_korean_member_reads_the_set_in_korean(world: World, selfie_bytes: bytes) -> None:
    await choose_takes(world, 2)
    interaction = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}, locale="ko"
    )
    final = await interaction.wait_for_final_file(timeout=60)
    assert "후보 2장이에요" in (final.content or "") and "나만 볼 수 있어요" in (final.content or "")
    assert [b["label"] for b in final.buttons] == ["1번 올리기", "2번 올리기", "다시 그리기", "지우기"]


async def test_a_take_the_safety_check_refuses_is_left_out_and_the_member_is_told(
    world: World, selfie_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = world.engine.safety
    assert checker is not None
    real = checker.check

    def second_refused(images, levels):  # type: ignore[no-untyped-def]
        verdicts = real(images, levels)
        return [replace(v, flagged=True) if i == 1 else v for i, v in enumerate(verdicts)]

    monkeypatch.setattr(checker, "check", second_refused)
    await choose_takes(world, 2)
    interaction = await profile(world, world.members[0], selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)
    # Only the first take is shown, as a single portrait with one Post button; nothing else left.
    assert [f.filename for f in final.files] == ["portrait-tiny-style.png", "avatar-preview.png"]
    assert len(post_ids(final)) == 1 and "didn't pass the safety check" in (final.content or "")
    assert world.standin.public_messages() == []
    [row] = await closed_log_rows(world, 1)
    assert (row.outcome, row.pictures) == ("delivered", 2), "both takes used the GPU"
