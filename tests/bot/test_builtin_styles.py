"""A fresh install's styles through the Discord stand-in: the built-in prompt styles next to LoRA ones,
the Plus-face IP-Adapter path end to end, and `/style list` marking what is built in."""

from __future__ import annotations

import io

import pytest
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from PIL import Image

from tests.bot.conftest import World


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"builtin_styles": True}


async def test_profile_runs_the_plus_ip_adapter_and_style_list_marks_built_ins(
    world: World, selfie_bytes: bytes
) -> None:
    layers = world.engine.pipe.unet.encoder_hid_proj.image_projection_layers
    assert isinstance(layers[0], IPAdapterPlusImageProjection)  # what production loads
    interaction = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    final = await interaction.wait_for_final_file(timeout=120)
    upload = final.files[0]
    with Image.open(io.BytesIO(upload.data)) as portrait:
        assert portrait.format == "PNG" and portrait.size == (64, 64)

    listing = await world.standin.send_slash_command("style list", user=world.admin, enforce_permissions=False)
    shown = await listing.wait_for_message(timeout=30)
    titles = {e["title"] for e in shown.embeds}
    built_in = {"Sunny Cartoon (built in)", "Anime (built in)", "Pixel Art (built in)"}
    assert built_in | {"Tiny Style", "Other Style"} <= titles
    sunny = next(e for e in shown.embeds if e["title"] == "Sunny Cartoon (built in)")
    assert "yellow" in sunny["description"]
    # Samples leave as freshly encoded PNGs; built-ins have none.
    assert sorted(f.filename for f in shown.files) == ["sample-other-style.png", "sample-tiny-style.png"]
    for upload in shown.files:
        with Image.open(io.BytesIO(upload.data)) as sample:
            assert sample.format == "PNG"


async def test_a_member_gets_a_portrait_in_a_built_in_prompt_style(world: World, selfie_bytes: bytes) -> None:
    interaction = await world.standin.send_slash_command(
        "profile", {"style": "pixel-art"}, user=world.dm_user, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    final = await interaction.wait_for_final_file(timeout=180)
    assert final.files[0].filename == "portrait-pixel-art.png" and "Pixel Art" in (final.content or "")


async def test_a_reroll_button_posted_before_the_rename_draws_the_renamed_style(
    world: World, selfie_bytes: bytes
) -> None:
    """Buttons under portraits drawn as `simpsons` are still out there; pressing one draws `sunny-cartoon`."""
    from tests.bot.test_profile import custom_id, profile
    from tests.bot.test_rooms import style_command
    from tests.discord_standin.interactions import walk_components

    # A room that lets members pick: the old button names another style than the room's own.
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=True)
    member = world.members[0]
    first = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=120)
    stored = world.standin.message(first.message_id)
    fresh = custom_id(first, "mmpp:reroll")
    old = fresh.replace(":tiny-style:", ":simpsons:")
    for component in walk_components(stored.components):
        if component.get("custom_id") == fresh:
            component["custom_id"] = old  # what the message showed before the rename
    second = await (await world.standin.send_component(stored, old, user=member)).wait_for_final_file(timeout=120)
    assert second.files[0].filename == "portrait-sunny-cartoon.png"
    assert "Sunny Cartoon" in (second.content or "")


async def test_a_korean_member_reads_built_in_styles_by_their_korean_titles(
    world: World, selfie_bytes: bytes
) -> None:
    """Autocomplete, /styles cards, progress and the result name a built-in by its Korean title and
    describe it in Korean; an operator's style with one title keeps it; no card shows a style's slug."""
    standin, user = world.standin, world.dm_user
    typed = await standin.send_autocomplete("profile", {"style": "픽셀"}, focused="style", user=user, locale="ko")
    assert await typed.wait_for_choices() == [{"name": "픽셀 아트", "value": "pixel-art"}]

    cards = await standin.send_slash_command("styles", user=user, locale="ko")
    shown = await cards.wait_for_message(timeout=30)
    by_title = {e["title"]: e for e in shown.embeds}
    assert {"수채화", "픽셀 아트", "햇살 카툰", "Tiny Style"} <= set(by_title)
    assert "노란 피부" in by_title["햇살 카툰"]["description"]
    assert not any("sunny-cartoon" in str(e) for e in shown.embeds), "a member picks by title, never by slug"

    interaction = await standin.send_slash_command(
        "profile", {"style": "pixel-art"}, user=user, attachments={"selfie": ("me.jpg", selfie_bytes)}, locale="ko"
    )
    final = await interaction.wait_for_final_file(timeout=180)
    progress = " ".join(a.content or "" for a in interaction.actions[1:-1])
    assert "**픽셀 아트** 프로필 사진을 그리는 중이에요" in progress
    done = final.content or ""
    assert "**픽셀 아트** 프로필 사진이 완성됐어요" in done and "Pixel Art" not in done
