"""Members use /profile through the real discord.py client and the Discord stand-in."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from mmpp.bot.portrait.wear import avatar_png
from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World, closed_log_rows
from tests.discord_standin import BotAction, InteractionRecord


def png_of(action: BotAction) -> Image.Image:
    upload = action.files[0]
    image = Image.open(io.BytesIO(upload.data))
    image.load()
    return image


def encode_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def custom_id(action: BotAction, prefix: str) -> str:
    return next(cid for cid in action.custom_ids if cid.startswith(prefix))


async def profile(world: World, user: object, selfie: bytes, **options: object) -> InteractionRecord:
    return await world.standin.send_slash_command(
        "profile", options or None, user=user, attachments={"selfie": ("me.jpg", selfie)}  # type: ignore[arg-type]
    )


async def test_guild_profile_ends_with_one_png_after_progress_edits(world: World, selfie_bytes: bytes) -> None:
    member = world.members[0]
    interaction = await profile(world, member, selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)

    assert interaction.callback is not None and interaction.callback.loading  # deferred at once
    assert interaction.callback.ephemeral, "the member alone sees it is on its way"
    assert all(a.ephemeral for a in interaction.actions), "progress and result are the member's alone"
    assert world.standin.public_messages() == [], "nothing public before Post"
    progress = [a.content or "" for a in interaction.actions[1 : interaction.actions.index(final)]]
    assert any("in line" in text or "You're next" in text for text in progress)
    assert any(re.search(r"step \d+/4", text) for text in progress)
    previews = [f for a in interaction.actions if a is not final for f in a.files]
    assert previews and all(f.filename == "preview.png" for f in previews)

    image = png_of(final)
    assert image.format == "PNG" and image.size == (64, 64)  # the tiny model's size (production: 1024)
    assert [f.filename for f in final.files] == ["portrait-tiny-style.png", "avatar-preview.png"]
    with Image.open(io.BytesIO(avatar_png(encode_png(Image.new("RGB", (768, 768), "teal"))))) as resized:
        assert resized.size == (1024, 1024), "a model drawing at another size still gives Discord's avatar size"
    with Image.open(io.BytesIO(final.files[1].data)) as circle:
        alpha = np.asarray(circle.convert("RGBA"))[..., 3]
        assert alpha[0, 0] == 0 and alpha[128, 128] == 255, "the preview is cropped to Discord's circle"
    [guide] = final.embeds
    assert "Change Avatar" in guide["description"] and "Nitro" in guide["description"]
    assert guide["thumbnail"]["url"] == "attachment://avatar-preview.png"
    assert "Tiny Style" in (final.content or "") and "<@" not in (final.content or ""), "a private reply pings nobody"
    assert {cid.split(":")[1] for cid in final.custom_ids} == {"post", "reroll", "delete"}

    [row] = await closed_log_rows(world, 1)
    assert (row.user_id, row.guild_id, row.style, row.outcome) == (
        member.user.id, world.guild.id, "tiny-style", "delivered"
    )
    assert row.interaction_token is None, "a closed job keeps no token"
    assert row.started_at is not None and row.finished_at is not None


async def test_dm_profile_lets_the_member_pick_a_style(world: World, selfie_bytes: bytes) -> None:
    interaction = await profile(world, world.dm_user, selfie_bytes, style="other-style")
    final = await interaction.wait_for_final_file(timeout=60)
    assert "Other Style" in (final.content or "")
    assert final.files[0].filename == "portrait-other-style.png"


async def test_style_autocomplete_offers_only_what_the_member_may_pick(world: World) -> None:
    async def offered(user: object) -> list[tuple[str, str]]:
        interaction = await world.standin.send_autocomplete("profile", {"style": "oth"}, focused="style", user=user)
        return [(c["name"], c["value"]) for c in await interaction.wait_for_choices()]

    assert await offered(world.members[0]) == [], "an unconfigured server gives everyone one look"
    assert await offered(world.dm_user) == [("Other Style", "other-style")], "in DMs any published style"
    await world.services.repo.set_server_preset(
        world.guild.id, "tiny-style", allow_member_choice=True, set_by=world.admin.user.id
    )
    assert await offered(world.members[0]) == [("Other Style", "other-style")]


async def test_reroll_draws_again_with_a_new_seed_and_delete_removes_it(world: World, selfie_bytes: bytes) -> None:
    member = world.members[1]
    first = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=60)

    stranger = await world.standin.send_component(first, custom_id(first, "mmpp:reroll"), user=world.members[2])
    refusal = await stranger.wait_for_message()
    assert refusal.ephemeral and "Only the member who made this portrait" in (refusal.content or "")

    reroll = await world.standin.send_component(first, custom_id(first, "mmpp:reroll"))
    second = await reroll.wait_for_final_file(timeout=60)
    seeds = [re.search(r"seed `(\d+)`", a.content or "").group(1) for a in (first, second)]  # type: ignore[union-attr]
    assert seeds[0] != seeds[1]
    assert png_of(first).tobytes() != png_of(second).tobytes()

    delete = await world.standin.send_component(second, custom_id(second, "mmpp:delete"))
    await delete.wait_for(lambda a: a.kind == "delete_message", timeout=10)


async def test_reroll_draws_a_new_seed_even_where_the_room_fixes_seeds(world: World, selfie_bytes: bytes) -> None:
    await world.services.repo.set_server_preset(
        world.guild.id, "tiny-style", seed_policy="fixed", seed=1234, set_by=world.admin.user.id
    )
    first = await (await profile(world, world.members[0], selfie_bytes)).wait_for_final_file(timeout=60)
    assert "seed `1234`" in (first.content or "")
    reroll = await world.standin.send_component(first, custom_id(first, "mmpp:reroll"))
    second = await reroll.wait_for_final_file(timeout=60)
    assert "seed `1234`" not in (second.content or "")
    assert png_of(first).tobytes() != png_of(second).tobytes()
    assert len(world.services.faces) == 1, "a reroll reuses the kept face, it does not copy it"


async def test_the_avatar_menu_draws_your_own_avatar(world: World, selfie_bytes: bytes) -> None:
    member = world.members[0]
    world.standin.set_avatar(member.user, selfie_bytes, "image/jpeg")
    mine = await world.standin.send_user_command("Make profile photo", member, user=member)
    await mine.wait_for_final_file(timeout=60)

    theirs = await world.standin.send_user_command("Make profile photo", world.members[1], user=member)
    refusal = await theirs.wait_for_message()
    assert refusal.ephemeral and "your own avatar" in (refusal.content or "")


async def test_queue_and_cancel(world: World, selfie_bytes: bytes) -> None:
    member = world.members[2]
    nothing = await world.standin.send_slash_command("queue", user=member)
    assert "no portrait on the way" in ((await nothing.wait_for_message()).content or "")
    cancel = await world.standin.send_slash_command("cancel", user=member)
    assert "no portrait on the way" in ((await cancel.wait_for_message()).content or "")


async def test_a_second_job_while_one_runs_is_refused(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    member = world.members[0]
    first = await profile(world, member, selfie_bytes)
    await engine_gate.wait_for_calls(1)
    second = await profile(world, member, selfie_bytes)
    refusal = await second.wait_for_message()
    assert refusal.ephemeral and "Your previous portrait is being made right now" in (refusal.content or "")

    status = await world.standin.send_slash_command("queue", user=member)
    assert "being drawn right now" in ((await status.wait_for_message()).content or "")
    engine_gate.release()
    await first.wait_for_final_file(timeout=60)


async def test_cancel_stops_a_waiting_portrait(world: World, selfie_bytes: bytes, engine_gate: RecordingEngine) -> None:
    running = await profile(world, world.members[0], selfie_bytes)
    await engine_gate.wait_for_calls(1)
    waiting = await profile(world, world.members[1], selfie_bytes)
    await waiting.wait_for_content("You're next", timeout=30)

    status = await world.standin.send_slash_command("queue", user=world.members[1])
    assert "number 1 in line" in ((await status.wait_for_message()).content or "")
    cancel = await world.standin.send_slash_command("cancel", user=world.members[1])
    assert "Cancelled" in ((await cancel.wait_for_message()).content or "")
    await waiting.wait_for_content("cancelled", timeout=10)

    engine_gate.release()
    await running.wait_for_final_file(timeout=60)
    assert not any(a.has_files and a.components for a in waiting.actions)


async def test_post_publishes_that_portrait_in_the_channel_and_only_then(world: World, selfie_bytes: bytes) -> None:
    member = world.members[1]
    interaction = await profile(world, member, selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)
    assert final.ephemeral and "Only you can see it" in (final.content or "")
    assert world.standin.public_messages() == []

    stranger = await world.standin.send_component(final, custom_id(final, "mmpp:post"), user=world.members[2])
    assert (await stranger.wait_for_message()).ephemeral and world.standin.public_messages() == []

    post = await world.standin.send_component(final, custom_id(final, "mmpp:post"))
    shown = await post.wait_for_message()
    [public] = world.standin.public_messages()
    assert public.id == shown.message_id and public.channel_id == interaction.channel_id
    assert [a["filename"] for a in public.attachments] == ["portrait-tiny-style.png"]
    assert f"<@{member.user.id}>" in public.content and "Tiny Style" in public.content
    assert shown.data.get("allowed_mentions", {}).get("parse") == [], "posting pings nobody"
    assert public.attachments[0]["size"] == final.files[0].size, "the very picture the member saw"

    again = await world.standin.send_component(final, custom_id(final, "mmpp:post"))
    assert (await again.wait_for_message()).ephemeral and len(world.standin.public_messages()) == 1


async def test_a_korean_member_reads_korean_and_the_room_reads_its_own_language(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[0]
    interaction = await world.standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}, locale="ko"
    )
    final = await interaction.wait_for_final_file(timeout=60)
    progress = " ".join(a.content or "" for a in interaction.actions[1:-1])
    assert "그리는 중이에요" in progress and re.search(r"<t:\d+:R>", progress), "waits are Discord timestamps"
    assert "나만 볼 수 있어요" in (final.content or "")
    assert {b["label"] for b in final.buttons} == {"올리기", "다시 그리기", "지우기"}
    assert final.embeds[0]["title"] == "프로필 사진으로 쓰는 법" and "아바타 변경" in final.embeds[0]["description"]
    assert world.standin.public_messages() == []

    # An English-speaking stranger is refused in English; the room's line follows the server's language.
    stranger = await world.standin.send_component(final, custom_id(final, "mmpp:post"), user=world.members[1])
    assert "Only the member who made this portrait" in ((await stranger.wait_for_message()).content or "")
    post = await world.standin.send_component(final, custom_id(final, "mmpp:post"), locale="ko")
    await post.wait_for_message()
    [public] = world.standin.public_messages()
    assert "posted a new **Tiny Style** profile photo" in public.content  # the server speaks English

    world.guild.preferred_locale = "ko"
    french = await world.standin.send_slash_command(
        "profile", user=world.members[2], attachments={"selfie": ("me.jpg", selfie_bytes)}, locale="fr"
    )
    done = await french.wait_for_final_file(timeout=60)
    assert "나만 볼 수 있어요" in (done.content or ""), "no French catalogue: the server's Korean"
    posted = await world.standin.send_component(done, custom_id(done, "mmpp:post"), locale="fr")
    await posted.wait_for_message()
    assert "님이 새 **Tiny Style** 프로필 사진을 올렸어요" in world.standin.public_messages()[-1].content


async def test_commands_carry_korean_names_and_install_anywhere_but_style(world: World) -> None:
    commands = {c["name"]: c for c in world.standin.synced_commands()}
    profile_command = commands["profile"]
    assert profile_command["name_localizations"]["ko"] == "프로필"
    assert profile_command["description_localizations"]["ko"].startswith("셀카를")
    selfie = next(o for o in profile_command["options"] if o["name"] == "selfie")
    assert selfie["name_localizations"]["ko"] == "셀카"
    assert sorted(profile_command["integration_types"]) == [0, 1] and sorted(profile_command["contexts"]) == [0, 1, 2]
    menu = commands["Make profile photo"]
    assert menu["name_localizations"]["ko"] == "프로필 사진 만들기" and sorted(menu["integration_types"]) == [0, 1]
    style = commands["style"]
    assert style["integration_types"] == [0] and style["contexts"] == [0], "admins' /style stays in servers"
    assert "nsfw" not in {o["name"] for o in style["options"]}, "the safety switch is a /style set field"
    for name in ("styles", "last", "queue", "cancel"):
        assert sorted(commands[name]["integration_types"]) == [0, 1], name


async def test_a_user_installed_profile_uses_the_servers_preset_else_any_style(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[0]

    async def offered() -> list[str]:
        typing = await world.standin.send_autocomplete(
            "profile", {"style": ""}, focused="style", user=member, installed_by="user"
        )
        return [c["value"] for c in await typing.wait_for_choices()]

    # Nobody in that server chose a look: the default, with any published style allowed.
    assert await offered() == ["other-style", "tiny-style"]
    mine = await world.standin.send_slash_command(
        "profile", {"style": "other-style"}, user=member, attachments={"selfie": ("me.jpg", selfie_bytes)},
        installed_by="user", locale="ko",
    )
    final = await mine.wait_for_final_file(timeout=60)
    assert final.files[0].filename == "portrait-other-style.png" and final.ephemeral
    assert [a.kind for a in mine.actions if a.kind == "followup"] == [], "the one reply is edited, no follow-ups"

    # Where its admins stored a preset, that preset holds for user installs too.
    await world.services.repo.set_server_preset(world.guild.id, "tiny-style", set_by=world.admin.user.id)
    assert await offered() == []
    refused = await world.standin.send_slash_command(
        "profile", {"style": "other-style"}, user=member, attachments={"selfie": ("me.jpg", selfie_bytes)},
        installed_by="user", locale="ko",
    )
    assert "같은 스타일(Tiny Style)" in ((await refused.wait_for_message()).content or "")


async def test_styles_shows_members_only_what_they_may_pick_in_their_language(world: World) -> None:
    one_look = await world.standin.send_slash_command("styles", user=world.members[0], locale="ko")
    shown = await one_look.wait_for_message()
    assert shown.ephemeral and "모두 같은 스타일(**Tiny Style**)" in (shown.content or "")
    assert [e["title"] for e in shown.embeds] == ["Tiny Style"]

    await world.services.repo.set_server_preset(
        world.guild.id, "tiny-style", allow_member_choice=True, set_by=world.admin.user.id
    )
    await world.services.repo.set_style_enabled(world.guild.id, "other-style", False, world.admin.user.id)
    choice = await world.standin.send_slash_command("styles", user=world.members[0])
    listed = await choice.wait_for_message()
    assert "style option of /profile" in (listed.content or ""), "the English menu name, filled in"
    assert [e["title"] for e in listed.embeds] == ["Tiny Style"], "a hidden style is never shown to members"
    anywhere = await world.standin.send_slash_command("styles", user=world.dm_user)
    assert [e["title"] for e in (await anywhere.wait_for_message()).embeds] == ["Other Style", "Tiny Style"]


async def test_a_server_that_chose_public_by_default_gets_each_portrait_posted_at_once(
    world: World, selfie_bytes: bytes
) -> None:
    setting = await world.standin.send_slash_command(
        "style set", {"public": True}, user=world.admin, enforce_permissions=False, locale="ko"
    )
    answer = await setting.wait_for_message()
    assert answer.ephemeral and "완성되면 바로 채널에 올리기" in str(answer.embeds)
    assert world.standin.public_messages() == []

    member = world.members[1]
    interaction = await profile(world, member, selfie_bytes)
    final = await interaction.wait_for_final_file(timeout=60)
    assert final.ephemeral and "posted in the channel too" in (final.content or "")
    assert not any(c.startswith("mmpp:post:") for c in final.custom_ids), "nothing left to post"
    posted = await interaction.wait_for(lambda a: a.kind == "followup", timeout=30)
    [public] = world.standin.public_messages()
    assert public.id == posted.message_id and f"<@{member.user.id}>" in public.content
    assert [a["filename"] for a in public.attachments] == ["portrait-tiny-style.png"]
