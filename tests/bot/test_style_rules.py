"""What a server hides stays hidden: from Reroll buttons, the default style, autocomplete and errors."""

from __future__ import annotations

import pytest

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World
from tests.bot.test_profile import custom_id, profile
from tests.bot.test_rooms import profile_style, style_command


async def test_an_old_reroll_button_follows_the_rooms_new_rules(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    engine_gate.release()
    member = world.members[0]
    first = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=60)
    assert first.files[0].filename == "portrait-tiny-style.png"
    reroll = custom_id(first, "mmpp:reroll")

    # Members may still choose, but the button's style is now hidden here.
    await style_command(world, "set", world.admin, style="other-style", allow_member_choice=True)
    await style_command(world, "available", world.admin, style="tiny-style", shown=False)
    pressed = await world.standin.send_component(first, reroll, user=member)
    refusal = await pressed.wait_for_message()
    assert refusal.ephemeral and "Tiny Style style isn't available here any more" in (refusal.content or "")

    # Shown again, but the room is locked to one style.
    await style_command(world, "available", world.admin, style="tiny-style", shown=True)
    await style_command(world, "set", world.admin, style="other-style", allow_member_choice=False)
    pressed = await world.standin.send_component(first, reroll, user=member)
    refusal = await pressed.wait_for_message()
    assert refusal.ephemeral and "same style (Other Style)" in (refusal.content or "")
    assert engine_gate.styles() == [["tiny-style"]], "neither refused reroll reached the GPU"


async def test_hiding_the_default_style_takes_it_away(world: World, selfie_bytes: bytes) -> None:
    # No preset on this server: the default (tiny-style) applies until it is hidden.
    await style_command(world, "available", world.admin, style="tiny-style", shown=False)
    assert await profile_style(world, world.members[0], selfie_bytes) == "other-style"
    shown = await style_command(world, "show", world.admin)
    assert "Other Style" in shown and "-style" not in shown, "named by its title, never its id"

    await style_command(world, "available", world.admin, style="other-style", shown=False)
    interaction = await profile(world, world.members[1], selfie_bytes)
    refusal = await interaction.wait_for_message()
    assert refusal.ephemeral and "turned every style off" in (refusal.content or "")


async def test_members_never_see_hidden_style_names(world: World, selfie_bytes: bytes) -> None:
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=True)
    await style_command(world, "available", world.admin, style="other-style", shown=False)

    # Autocomplete on an admin command runs without the command's permission check.
    typing = await world.standin.send_autocomplete(
        "style available", {"style": ""}, focused="style", user=world.members[0]
    )
    assert [c["value"] for c in await typing.wait_for_choices()] == ["tiny-style"]
    typing = await world.standin.send_autocomplete("style available", {"style": ""}, focused="style",
                                                   user=world.admin)
    assert [c["name"] for c in await typing.wait_for_choices()] == ["Other Style (hidden)", "Tiny Style"]

    interaction = await profile(world, world.members[0], selfie_bytes, style="no-such-style")
    refusal = await interaction.wait_for_message()
    text = refusal.content or ""
    assert refusal.ephemeral and "I can't find that style here" in text and "no-such-style" not in text
    assert "Tiny Style" in text and "other" not in text.lower()


async def test_a_style_the_bot_no_longer_has_is_named_by_no_id(
    world: World, selfie_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's stored style is gone from the bot (its operator removed it after the admin chose it):
    the engine's refusal names ids an operator types; a member reads none, only where to look instead."""
    await style_command(world, "set", world.admin, style="other-style")
    monkeypatch.delitem(world.services.queue.catalog.styles, "other-style")
    for member, locale, command in ((world.members[0], "en-US", "/styles"), (world.members[1], "ko", "/스타일목록")):
        interaction = await world.standin.send_slash_command(
            "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}, locale=locale
        )
        refusal = (await interaction.wait_for_message()).content or ""
        assert command in refusal and "-style" not in refusal, refusal


async def test_a_reroll_in_a_style_the_bot_no_longer_has_names_no_id(
    world: World, selfie_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=True)
    member = world.members[0]
    first = await (await profile(world, member, selfie_bytes, style="other-style")).wait_for_final_file(timeout=60)
    monkeypatch.delitem(world.services.queue.catalog.styles, "other-style")
    pressed = await world.standin.send_component(first, custom_id(first, "mmpp:reroll"), user=member)
    refusal = (await pressed.wait_for_message()).content or ""
    assert "isn't available any more" in refusal and "-style" not in refusal, refusal


async def test_an_admin_picks_a_style_by_its_title_and_reads_titles_only(world: World) -> None:
    """/style show names styles by title (the channel's and each override's), since an admin picks a style
    by its title too: in /style set where members may not pick (the default), and in /style available."""
    await style_command(world, "available", world.admin, style="tiny-style", shown=False)

    async def offered(command: str, typed: str) -> list[tuple[str, str]]:
        typing = await world.standin.send_autocomplete(command, {"style": typed}, focused="style", user=world.admin)
        return [(c["name"], c["value"]) for c in await typing.wait_for_choices()]

    assert await offered("style set", "") == [("Other Style", "other-style")], "a hidden style cannot be set"
    assert await offered("style available", "tiny s") == [("Tiny Style (hidden)", "tiny-style")]

    await style_command(world, "available", world.admin, style="tiny-style", shown=True)
    await style_command(world, "set", world.admin, style="tiny-style", channel=world.guild.default_channel)
    for locale in ("en-US", "ko"):
        interaction = await world.standin.send_slash_command(
            "style show", user=world.admin, enforce_permissions=False, locale=locale
        )
        [embed] = (await interaction.wait_for_message(timeout=30)).embeds
        shown = " ".join(f"{f['name']} {f['value']}" for f in embed["fields"])
        assert "Tiny Style" in shown and "-style" not in shown, shown


async def test_an_admin_who_types_a_style_without_picking_it_reads_what_they_typed(world: World) -> None:
    """A typo is the admin's own words back and where to pick from, not a member's "it may have been removed"."""
    answer = await style_command(world, "set", world.admin, style="Tiny Styel")
    assert "There's no style called 'Tiny Styel'. Pick one from the list that opens as you type." in answer
    assert "removed" not in answer
