"""Admins set a room's style; members get it; everyone gets an answer, in fair order."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows
from tests.conftest import encode
from tests.discord_standin import MANAGE_GUILD, FakeMember
from tests.engine.test_preprocess import huge_png, two_faces


async def style_command(world: World, sub: str, user: FakeMember, **options: object) -> str:
    interaction = await world.standin.send_slash_command(
        f"style {sub}", options or None, user=user, enforce_permissions=False
    )
    message = await interaction.wait_for_message(timeout=30)
    assert message.ephemeral, "admin answers are for the admin only"
    return (message.content or "") + " ".join(str(e) for e in message.embeds)


async def profile_style(world: World, member: FakeMember, selfie: bytes, **options: object) -> str:
    """/profile as `member`; the style the portrait was drawn in."""
    interaction = await world.standin.send_slash_command(
        "profile", options or None, user=member, attachments={"selfie": ("me.jpg", selfie)}
    )
    final = await interaction.wait_for_final_file(timeout=60)
    return final.files[0].filename.removeprefix("portrait-").removesuffix(".png")


async def test_an_admin_sets_the_style_and_members_then_get_it(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    engine_gate.release()  # only watching what reaches the engine
    assert await profile_style(world, world.members[0], selfie_bytes) == "tiny-style"
    answer = await style_command(world, "set", world.admin, style="other-style", background="teal",
                                 framing="close-up")
    assert "Other Style" in answer and "teal" in answer
    assert [await profile_style(world, m, selfie_bytes) for m in world.members[:2]] == ["other-style"] * 2
    touches = [(r.style, r.background, r.framing) for r in engine_gate.requests]
    assert touches == [("tiny-style", None, None)] + [("other-style", "teal", "close-up")] * 2

    shown = await style_command(world, "show", world.admin)
    assert "Other Style" in shown and "other-style" not in shown and "server preset" in shown
    await style_command(world, "reset", world.admin)
    assert await profile_style(world, world.members[2], selfie_bytes) == "tiny-style"


async def test_a_member_cannot_pick_another_style_once_the_room_has_one(world: World, selfie_bytes: bytes) -> None:
    await style_command(world, "set", world.admin, style="other-style")
    interaction = await world.standin.send_slash_command(
        "profile", {"style": "tiny-style"}, user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    refusal = await interaction.wait_for_message()
    assert refusal.ephemeral and "same style (Other Style)" in (refusal.content or "")
    await style_command(world, "set", world.admin, style="other-style", allow_member_choice=True)
    assert await profile_style(world, world.members[0], selfie_bytes, style="tiny-style") == "tiny-style"


async def test_a_non_admin_is_refused(world: World) -> None:
    [style] = [c for c in world.standin.synced_commands() if c["name"] == "style"]
    assert int(style["default_member_permissions"]) == MANAGE_GUILD  # hidden in Discord's menus too
    for sub, options in (("set", {"style": "other-style"}), ("reset", {}), ("preview", {})):
        interaction = await world.standin.send_slash_command(
            f"style {sub}", options or None, user=world.members[0], enforce_permissions=False
        )
        refusal = await interaction.wait_for_message()
        assert refusal.ephemeral and "Manage Server" in (refusal.content or "")
    assert (await world.services.repo.resolve(world.guild.id, None)).style == "tiny-style"


async def test_preview_list_and_hiding_a_style(world: World) -> None:
    preview = await world.standin.send_slash_command("style preview", user=world.admin, enforce_permissions=False)
    final = await preview.wait_for(lambda a: a.has_files and "sample" in (a.content or ""), timeout=60)
    assert final.ephemeral and final.files[0].filename == "portrait-tiny-style.png"
    assert not final.custom_ids, "a preview has no reroll button"

    listing = await world.standin.send_slash_command("style list", user=world.admin, enforce_permissions=False)
    shown = await listing.wait_for_message()
    assert [e["title"] for e in shown.embeds] == ["Other Style", "Tiny Style"]
    assert sorted(f.filename for f in shown.files) == ["sample-other-style.png", "sample-tiny-style.png"]
    assert shown.embeds[0]["thumbnail"]["url"] == "attachment://sample-other-style.png"
    await style_command(world, "available", world.admin, style="other-style", shown=False)
    assert "hidden on this server" in await style_command(world, "list", world.admin)
    typing = await world.standin.send_autocomplete("style available", {"style": "oth"}, focused="style",
                                                   user=world.admin)
    assert [c["name"] for c in await typing.wait_for_choices()] == ["Other Style (hidden)"]
    refused = await world.standin.send_slash_command("style set", {"style": "other-style"}, user=world.admin,
                                                     enforce_permissions=False)
    assert "isn't offered on this server" in ((await refused.wait_for_message()).content or "")


def animated_gif_without_a_face() -> bytes:
    frames = [Image.new("RGB", (256, 256), colour) for colour in ((10, 120, 200), (200, 40, 40))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


BAD_INPUTS = {
    "text file named .jpg": (lambda: b"I am not a photo\n" * 30, "isn't a picture I can read"),
    "truncated JPEG": (lambda: encode(skdata.astronaut())[:4000], "damaged or incomplete"),
    "20000x20000 PNG": (lambda: huge_png(20000, 20000), "megapixels"),
    "animated GIF with no face": (animated_gif_without_a_face, "couldn't find a face"),
    "1x1 image": (lambda: encode(Image.new("RGB", (1, 1)), "PNG"), "only 1x1 pixels"),
    "photo with no face": (lambda: encode(skdata.coffee()), "couldn't find a face"),
    "two faces": (lambda: two_faces(Image.fromarray(skdata.astronaut())), "found 2 faces"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_is_an_ephemeral_error_and_the_bot_keeps_going(
    case: str, world: World, selfie_bytes: bytes
) -> None:
    make, expected = BAD_INPUTS[case]
    member = world.members[0]
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("selfie.jpg", make())}
    )
    error = await interaction.wait_for_message(lambda a: expected in (a.content or ""), timeout=30)
    # The one private reply says what went wrong; nothing about the failure is in the channel.
    assert error.ephemeral and error.kind == "edit_original"
    assert world.standin.public_messages() == []
    assert not any(a.has_files for a in interaction.actions)
    assert world.services.queue.job_for(member.user.id) is None
    assert await profile_style(world, member, selfie_bytes) == "tiny-style"


async def test_a_cmyk_jpeg_with_exif_rotation_works(world: World) -> None:
    upright = Image.fromarray(skdata.astronaut())
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encode(upright.rotate(90, expand=True).convert("CMYK"), "JPEG", exif=exif.tobytes())
    assert await profile_style(world, world.members[0], jpeg) == "tiny-style"


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"max_batch_size": 4, "queue_capacity": 50}


async def test_twenty_members_at_once_all_get_an_answer_in_fair_order(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    standin = world.standin
    busy = standin.add_guild("Busy Server")
    quiet = standin.add_guild("Quiet Server")
    busy_members = [standin.add_member(busy, standin.add_user(f"busy{i}")) for i in range(15)]
    quiet_members = [standin.add_member(quiet, standin.add_user(f"quiet{i}")) for i in range(5)]

    # The busy server's fifteen ask first; the worker is held so everyone is in line together.
    interactions = []
    for member in busy_members + quiet_members:
        interactions.append(await standin.send_slash_command(
            "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
        ))
        if len(interactions) == 1:
            await engine_gate.wait_for_calls(1)
    await asyncio.gather(*(i.wait_for(lambda a: a.kind == "edit_original", timeout=30) for i in interactions))
    engine_gate.release()
    finals = await asyncio.gather(*(i.wait_for_final_file(timeout=120) for i in interactions))

    assert len(finals) == 20 and all(len(f.files) == 2 for f in finals)
    for final in finals:
        image = Image.open(io.BytesIO(final.files[0].data))
        assert np.asarray(image).std() > 0
    rows = await closed_log_rows(world, 20)
    assert len(rows) == 20 and {r.outcome for r in rows} == {"delivered"}
    started = {r.user_id: r.started_at for r in rows}
    busy_starts = sorted(started[m.user.id] for m in busy_members)
    quiet_starts = [started[m.user.id] for m in quiet_members]
    # Round-robin between servers: the quiet server's five are all drawn before the busy server's
    # ninth job, where first-come-first-served would make them wait for all fifteen.
    assert max(quiet_starts) < busy_starts[8]
    assert max(len(call) for call in engine_gate.calls) <= 4
